"""OpenAI's Images API as a front door over the one generation flow: `POST /v1/images/generations` is translated
into the request of the model its `model` names (any catalog model, by its OpenAI id or Segmind's slug), through the
fields' roles (`size` onto width and height or the nearest aspect ratio, `n` onto the batch field, `output_format`
and `output_compression` onto the format and quality fields; the model's other fields by their own names),
validated exactly as v1 validates it with errors naming OpenAI's parameters, generated or served like any other
request (cache, coalescing, budgets, Idempotency-Key), and answered in OpenAI's shape; `GET /v1/models` lists the
models. What OpenAI offers and a model cannot honour is refused naming the parameter, never silently dropped."""

from __future__ import annotations

import base64
import json
import math
import random
import re
import time
from collections.abc import Mapping
from concurrent.futures import Future
from typing import Any

from pydantic import ValidationError

from segmind_proxy.api.bodies import check_body
from segmind_proxy.api.delivery import Delivery, Order, Reply, ResponseMode
from segmind_proxy.api.services import Incoming, Services
from segmind_proxy.api.synchronous import Door, start_cache_read
from segmind_proxy.domain.catalog import Catalog, ModelSpec, Role
from segmind_proxy.domain.errors import RequestInvalid, UnknownModel
from segmind_proxy.domain.image_formats import FORMAT_OF
from segmind_proxy.domain.images import ImageResult
from segmind_proxy.domain.request import Txt2ImgRequest, default_model, load_json_object, validated
from segmind_proxy.domain.tenants import Tenant
from segmind_proxy.flows.access import check_model

GENERATIONS_PATH = "/v1/images/generations"
MODELS_PATH = "/v1/models"
MODEL_ID = default_model().openai_id  # the model of a request that names none
MODEL_CREATED = 1729555200  # 2024-10-22 (SD 3.5's release): OpenAI's model objects carry a date; the pages give none
OWNED_BY = "segmind"
IDEMPOTENCY_ROUTE = "openai-images"

RESPONSE_FORMATS = ("b64_json", "url")
DEFAULT_RESPONSE_FORMAT = "b64_json"
# The OpenAI parameter each role's field is set through; a model's other fields are its extensions, sent as the model
# names them (the openai SDKs send them through `extra_body`).
OPENAI_PARAMS = {
    Role.PROMPT: "prompt",
    Role.COUNT: "n",
    Role.WIDTH: "size",
    Role.HEIGHT: "size",
    Role.ASPECT_RATIO: "size",
    Role.FORMAT: "output_format",
    Role.QUALITY: "output_compression",
    Role.BASE64: "response_format",
}
# A size picks the model's aspect ratio within this much of WIDTH/HEIGHT (1792x1024 is 16:9 to 1.6 %).
RATIO_TOLERANCE = 0.02
# OpenAI's fields that ask for something these models do not do: accepted only as these values.
ACCEPTED_ONLY: dict[str, tuple[Any, ...]] = {
    "quality": ("auto",),
    "background": ("auto", "opaque"),  # the models make opaque images
    "moderation": ("auto", "low"),  # the gateway moderates nothing: neither asks for more than that
    "stream": (False,),
}
REFUSED = {
    "style": "'style' is not supported: {name} has no style presets (describe it in the prompt)",
    "partial_images": "'partial_images' is not supported: this gateway does not stream partial images",
    "frame_count": "'frame_count' is not supported: {name} makes still images only",
    "frame_duration_ms": "'frame_duration_ms' is not supported: {name} makes still images only",
    "complexity": "'complexity' is not supported: {name} makes raster images only",
    "svg": "'svg' is not supported: {name} makes raster images only",
}
WHY_NOT = {
    "quality": "{name} has no quality tiers (set its steps instead, where it has them)",
    "background": "{name} cannot make transparent backgrounds",
    "stream": "this gateway does not stream images",
}
OPENAI_FIELDS = frozenset(
    {"model", "prompt", "n", "size", "response_format", "output_format", "output_compression", "user"}
    | {"safety_identifier", *ACCEPTED_ONLY, *REFUSED}
)
_SIZE = re.compile(r"^([0-9]{1,5})x([0-9]{1,5})$")


def invalid(param: str, message: str) -> RequestInvalid:
    return RequestInvalid(message, details=[{"field": param, "message": message}])


def extensions(model: ModelSpec) -> tuple[str, ...]:
    """The model's fields a client sets as they are (no OpenAI parameter maps onto them): a negative prompt, a seed,
    steps, a sampler..."""
    return tuple(name for name, spec in model.fields.items() if spec.role not in OPENAI_PARAMS)


def openai_param(model: ModelSpec, field: str) -> str:
    """The OpenAI parameter a field of the model is set through (its own name for an extension)."""
    spec = model.fields.get(field)
    return OPENAI_PARAMS.get(spec.role, field) if spec is not None and spec.role else field


def translate(data: dict[str, Any], catalog: Catalog) -> Order:
    """OpenAI's body as the named model's request, or RequestInvalid naming the OpenAI parameter at fault."""
    model = find_model(data.get("model"), catalog)
    unknown = sorted(set(data) - OPENAI_FIELDS - set(extensions(model)))
    if unknown:
        raise invalid(unknown[0], f"Unknown parameter: '{unknown[0]}' ({model.name} takes {_taken(model)})")
    _check_refusals(data, model)
    if "prompt" not in data:
        raise invalid("prompt", "Missing required parameter: 'prompt'")
    fields: dict[str, Any] = {model.field_of(Role.PROMPT) or "prompt": data["prompt"]}
    fields |= {name: data[name] for name in extensions(model) if name in data}
    fields |= _seed(model, fields) | _size(data.get("size"), model) | _count(data.get("n"), model)
    fields |= _output_format(data.get("output_format"), model) | _quality(data.get("output_compression"), model)
    if (base64_field := model.field_of(Role.BASE64)) is not None:
        fields[base64_field] = True
    mode = ResponseMode.URL if _response_format(data.get("response_format")) == "url" else ResponseMode.INLINE
    recorded = {name: _identifier(data, name) for name in ("user", "safety_identifier") if data.get(name) is not None}
    # OpenAI's images are always base64 JSON (`b64_json`); its Idempotency-Keys are scoped to this route.
    return Order(_validated(model, fields), mode, True, IDEMPOTENCY_ROUTE, {"front_door": "openai", **recorded})


def _taken(model: ModelSpec) -> str:
    return ", ".join(sorted(OPENAI_FIELDS - set(REFUSED))) + ", and its own " + (", ".join(extensions(model)) or "none")


def find_model(model: Any, catalog: Catalog) -> ModelSpec:
    """The model a request names by its OpenAI id or Segmind's slug; none named: Stable Diffusion 3.5 Turbo."""
    if model is None:
        found = catalog.find(default_model().slug)
    else:
        found = catalog.find(model) if isinstance(model, str) else None
    if found is None:
        shown = model if isinstance(model, str) and _PLAIN.fullmatch(model) else "asked for"
        raise UnknownModel(f"The model '{shown}' does not exist: GET /v1/models lists those this gateway serves")
    return found


_PLAIN = re.compile(r"[A-Za-z0-9._-]{1,100}")


def _check_refusals(data: dict[str, Any], model: ModelSpec) -> None:
    """OpenAI's parameters a model cannot honour; a model's own field of the same name (SDXL's `style`) is its own."""
    for name, message in REFUSED.items():
        if data.get(name) is not None and name not in model.fields:
            raise invalid(name, message.format(name=model.name))
    for name, allowed in ACCEPTED_ONLY.items():
        value = data.get(name)
        if name in model.fields:
            continue
        if value is not None and (value not in allowed or type(value) is not type(allowed[0])):
            because = WHY_NOT.get(name, "").format(name=model.name)
            shown = ", ".join(repr(a) if not isinstance(a, str) else a for a in allowed)
            raise invalid(
                name, f"Invalid value for '{name}': {value!r}; accepted: {shown}" + (f" ({because})" * bool(because))
            )


def _seed(model: ModelSpec, fields: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's answers are fresh images: without a seed, the model's random seed, or one drawn here (within its
    range, so the images are still cached under it and `x-seed-value` says which)."""
    name = model.field_of(Role.SEED)
    if name is None or name in fields:
        return {}
    spec = model.fields[name]
    if spec.random is not None:
        return {name: spec.random}
    low, high = int(spec.minimum or 0), int(spec.maximum if spec.maximum is not None else 2**32 - 1)
    return {name: random.randint(low, high)}


def _size(size: Any, model: ModelSpec) -> dict[str, Any]:
    """`size` onto the model's width and height, or onto its aspect ratio nearest WIDTH/HEIGHT."""
    if size is None or size == "auto":
        return {}  # the model's default size
    found = _SIZE.match(size) if isinstance(size, str) else None
    if found is None:
        raise invalid("size", f"Invalid 'size': {size!r}; expected 'auto' or 'WIDTHxHEIGHT'")
    width, height = int(found[1]), int(found[2])
    width_field, height_field = model.field_of(Role.WIDTH), model.field_of(Role.HEIGHT)
    if width_field and height_field:
        return {width_field: width, height_field: height}
    ratio_field = model.field_of(Role.ASPECT_RATIO)
    if ratio_field is None or not width or not height:
        raise invalid("size", f"'size' is not supported: {model.name} has no size to set (send 'auto')")
    ratios = model.fields[ratio_field].enum or ()
    nearest = min(ratios, key=lambda ratio: abs(_ratio(ratio) / (width / height) - 1), default=None)
    if nearest is None or abs(_ratio(nearest) / (width / height) - 1) > RATIO_TOLERANCE:
        raise invalid(
            "size",
            f"Invalid 'size': {size!r}; {model.name} sets aspect ratios only, and none is within "
            f"{RATIO_TOLERANCE:.0%} of it: {', '.join(ratios)} (any WIDTHxHEIGHT of those proportions)",
        )
    return {ratio_field: nearest}


def _ratio(ratio: str) -> float:
    wide, _, high = ratio.partition(":")
    try:
        return int(wide) / int(high)
    except (ValueError, ZeroDivisionError):
        return math.inf


def _count(n: Any, model: ModelSpec) -> dict[str, Any]:
    if n is None:
        return {}
    field = model.field_of(Role.COUNT)
    if field is None:
        if n == 1 and type(n) is int:
            return {}
        raise invalid("n", f"Invalid 'n': {n!r}; {model.name} makes one image per request (n 1 or absent)")
    return {field: n}


def _output_format(value: Any, model: ModelSpec) -> dict[str, Any]:
    """OpenAI's format names (png, jpeg, webp) onto the model's own (its `jpg`, say), by media type."""
    if value is None:
        return {}
    field = model.field_of(Role.FORMAT)
    by_openai = {FORMAT_OF[media]: name for name, media in model.output_formats.items()}
    if value in ("gif", "svg"):
        raise invalid("output_format", f"'output_format' {value} is not supported: {model.name} makes raster stills")
    if not isinstance(value, str) or value not in by_openai:
        allowed = ", ".join(by_openai)
        raise invalid("output_format", f"Invalid value for 'output_format': {value!r}; {model.name} makes: {allowed}")
    return {field: by_openai[value]} if field else {}


def _quality(value: Any, model: ModelSpec) -> dict[str, Any]:
    if value is None:
        return {}
    field = model.field_of(Role.QUALITY)
    if field is None:
        raise invalid("output_compression", f"'output_compression' is not supported: {model.name} has no quality")
    low = model.fields[field].minimum
    if type(value) is int and low is not None and value < low:
        raise invalid(
            "output_compression",
            f"'output_compression' must be at least {low}: {model.name}'s {field} (which it sets) goes no lower",
        )
    return {field: value}


def _response_format(value: Any) -> str:
    if value is None:
        return DEFAULT_RESPONSE_FORMAT
    if value not in RESPONSE_FORMATS:
        raise invalid("response_format", f"Invalid value for 'response_format': {value!r}; accepted: url, b64_json")
    return value


def _identifier(data: dict[str, Any], name: str) -> str:
    value = data[name]
    if not isinstance(value, str) or len(value) > 256:
        raise invalid(name, f"'{name}' must be a string of at most 256 characters")
    return value


def _validated(model: ModelSpec, fields: dict[str, Any]) -> Txt2ImgRequest:
    """The model's own validation (v1's), its fields named back as OpenAI's parameters."""
    try:
        return validated(model, fields)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        details = [_openai_detail(model, e) for e in errors]
        raise RequestInvalid("Invalid request: " + "; ".join(d["message"] for d in details), details=details) from None


def _openai_detail(model: ModelSpec, error: Mapping[str, Any]) -> dict[str, str]:
    field = ".".join(str(part) for part in error["loc"]) or "body"
    param = openai_param(model, field)
    if error["type"] == "missing":
        return {"field": param, "message": f"Missing required parameter: '{param}'"}
    message = error["msg"].removeprefix("Value error, ")
    shown = f"'{param}' ({field})" if param != field else f"'{param}'"
    return {"field": param, "message": f"Invalid {shown}: {message}"}


def validate(body: bytes | None, headers: Mapping[str, str], services: Services) -> Order:
    """Every check that needs no I/O, so a bad request costs nothing."""
    check_body(body, headers, services.settings)
    return translate(load_json_object(body), services.catalog)


def translate_incoming(incoming: Incoming, services: Services) -> Order:
    return validate(incoming.body, incoming.headers, services)


def prefetch_cache_read(
    body: bytes | None, headers: Mapping[str, str], model: str, namespace: str, services: Services
) -> tuple[Order | None, Future[ImageResult | None] | None]:
    """As v1's: the body translated once, at the edge, and the cache read of a request with a fixed seed started
    alongside the tenant check. An invalid body is translated again by the route, which refuses it and counts it."""
    try:
        order = validate(body, headers, services)
    except (RequestInvalid, UnknownModel):
        return None, None
    return order, start_cache_read(order, headers, namespace, services)


def shape(delivery: Delivery, order: Order) -> Reply:
    """OpenAI's answer: `b64_json` items, or `url` items (presigned) when asked or when too big for Lambda."""
    result = delivery.result
    if delivery.urls is not None:
        items = [{"url": url} for url in delivery.urls]
    else:
        items = [{"b64_json": base64.b64encode(image).decode()} for image in result.images or []]
    body: dict[str, Any] = {"created": int(time.time()), "data": items, "output_format": result.image_format}
    if order.request.size is not None:  # a model sized by aspect ratio alone: its page names no pixel size
        body["size"] = "{}x{}".format(*order.request.size)
    return Reply(200, "application/json", json.dumps(body, separators=(",", ":")), delivery.headers)


DOOR = Door(translate_incoming, shape)


def model_object(model: ModelSpec) -> dict[str, Any]:
    return {"id": model.openai_id, "object": "model", "created": MODEL_CREATED, "owned_by": OWNED_BY}


def models(catalog: Catalog, tenant: Tenant | None) -> dict[str, Any]:
    """The models this tenant may use (its plan's, or its own list)."""
    allowed = [model for model in catalog if tenant is None or tenant.may_use(model.slug)]
    return {"object": "list", "data": [model_object(model) for model in allowed]}


def model(model_id: str, catalog: Catalog, tenant: Tenant | None) -> dict[str, Any]:
    """One model, by its OpenAI id or Segmind's slug; one the tenant may not use is not found, as OpenAI answers."""
    found = find_model(model_id, catalog)
    check_model(tenant, found)
    return model_object(found)
