"""OpenAI's Images API as a front door over the one generation flow: `POST /v1/images/generations` is translated
into Segmind's request (validated exactly as v1 validates it, errors naming OpenAI's parameters), generated or
served like any other request (cache, coalescing, budgets, Idempotency-Key), and answered in OpenAI's shape; and
`GET /v1/models` lists the one model. What OpenAI offers and Stable Diffusion cannot honour is refused, never
silently ignored."""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from segmind_proxy.api.delivery import IMAGES_DELIVERED, Reply, ResponseMode, keep_for_urls
from segmind_proxy.api.headers import idempotency_key
from segmind_proxy.api.openai_errors import SEGMIND_TO_OPENAI
from segmind_proxy.api.segmind_v1 import (
    Parsed,
    answered,
    check_body,
    generate_or_replay,
    plan_for,
    report,
    request_scope,
    start_cache_read,
)
from segmind_proxy.api.services import Incoming, Services
from segmind_proxy.domain.delivery import fits_inline, undeliverable
from segmind_proxy.domain.errors import RequestInvalid, UnknownModel
from segmind_proxy.domain.images import ImageResult
from segmind_proxy.domain.request import DEFAULT_SLUG, Txt2ImgRequest, default_model, load_json_object, validated
from segmind_proxy.domain.usage import Caller
from segmind_proxy.flows.billing import counting_rejections
from segmind_proxy.flows.idempotent import Keyed
from segmind_proxy.settings import Settings

GENERATIONS_PATH = "/v1/images/generations"
MODELS_PATH = "/v1/models"
MODEL_ID = "stable-diffusion-3.5-turbo"
MODEL_ALIASES = frozenset({MODEL_ID, DEFAULT_SLUG})  # Segmind's slug names the same model
MODEL_CREATED = 1729555200  # 2024-10-22, when Stability AI released Stable Diffusion 3.5 (Large Turbo)
OWNED_BY = "segmind"
IDEMPOTENCY_ROUTE = "openai-images"

RESPONSE_FORMATS = ("b64_json", "url")
DEFAULT_RESPONSE_FORMAT = "b64_json"
# Segmind's request fields a client may send as they are (the openai SDKs send them through `extra_body`).
SEGMIND_EXTENSIONS = ("negative_prompt", "seed", "steps", "guidance_scale", "sampler", "scheduler")
# OpenAI's fields that ask for something Stable Diffusion 3.5 Turbo does not do: accepted only as these values.
ACCEPTED_ONLY: dict[str, tuple[Any, ...]] = {
    "quality": ("auto",),
    "background": ("auto", "opaque"),  # SD makes opaque images
    "moderation": ("auto", "low"),  # the gateway moderates nothing: neither asks for more than that
    "stream": (False,),
}
REFUSED = {
    "style": "'style' is not supported: Stable Diffusion 3.5 Turbo has no style presets (describe it in the prompt)",
    "partial_images": "'partial_images' is not supported: this gateway does not stream partial images",
    "frame_count": "'frame_count' is not supported: Stable Diffusion 3.5 Turbo makes still images only",
    "frame_duration_ms": "'frame_duration_ms' is not supported: Stable Diffusion 3.5 Turbo makes still images only",
    "complexity": "'complexity' is not supported: Stable Diffusion 3.5 Turbo makes raster images only",
    "svg": "'svg' is not supported: Stable Diffusion 3.5 Turbo makes raster images only",
}
WHY_NOT = {
    "quality": "Stable Diffusion 3.5 Turbo has no quality tiers (set 'steps' instead)",
    "background": "Stable Diffusion 3.5 Turbo cannot make transparent backgrounds",
    "stream": "this gateway does not stream images",
}
KNOWN_FIELDS = frozenset(
    {
        "model",
        "prompt",
        "n",
        "size",
        "response_format",
        "output_format",
        "output_compression",
        "user",
        "safety_identifier",
        *SEGMIND_EXTENSIONS,
        *ACCEPTED_ONLY,
        *REFUSED,
    }
)
_SIZE = re.compile(r"^([0-9]{1,5})x([0-9]{1,5})$")


@dataclass(frozen=True)
class ImageOrder:
    """An OpenAI images request, translated: Segmind's request and how OpenAI's client wants the answer."""

    request: Txt2ImgRequest
    as_url: bool
    recorded: dict[str, str]  # `user`, `safety_identifier`: logged with the request, never sent upstream


def invalid(param: str, message: str) -> RequestInvalid:
    return RequestInvalid(message, details=[{"field": param, "message": message}])


def translate(data: dict[str, Any]) -> ImageOrder:
    """OpenAI's body as Segmind's request, or RequestInvalid naming the OpenAI parameter at fault."""
    unknown = sorted(set(data) - KNOWN_FIELDS)
    if unknown:
        raise invalid(unknown[0], f"Unknown parameter: '{unknown[0]}'")
    _check_model(data.get("model"))
    _check_refusals(data)
    fields: dict[str, Any] = {"prompt": data.get("prompt"), "seed": -1, "base64": True}
    if "prompt" not in data:
        raise invalid("prompt", "Missing required parameter: 'prompt'")
    fields |= {name: data[name] for name in SEGMIND_EXTENSIONS if name in data}
    fields |= _size(data.get("size"))
    for openai_name, segmind_name in (("n", "batch_size"), ("output_compression", "image_quality")):
        if data.get(openai_name) is not None:
            fields[segmind_name] = data[openai_name]
    fields |= _output_format(data.get("output_format"))
    _check_compression(data.get("output_compression"))
    as_url = _response_format(data.get("response_format")) == "url"
    recorded = {name: _identifier(data, name) for name in ("user", "safety_identifier") if data.get(name) is not None}
    return ImageOrder(_validated(fields), as_url, recorded)


def _check_model(model: Any) -> None:
    if model is None or (isinstance(model, str) and model in MODEL_ALIASES):
        return
    shown = model if isinstance(model, str) else repr(model)
    raise UnknownModel(f"The model '{shown}' does not exist: this gateway serves '{MODEL_ID}' only")


def _check_refusals(data: dict[str, Any]) -> None:
    for name, message in REFUSED.items():
        if data.get(name) is not None:
            raise invalid(name, message)
    for name, allowed in ACCEPTED_ONLY.items():
        value = data.get(name)
        if value is not None and (value not in allowed or type(value) is not type(allowed[0])):
            because = WHY_NOT.get(name, "")
            shown = ", ".join(repr(a) if not isinstance(a, str) else a for a in allowed)
            raise invalid(
                name, f"Invalid value for '{name}': {value!r}; accepted: {shown}" + (f" ({because})" * bool(because))
            )


def _size(size: Any) -> dict[str, Any]:
    if size is None or size == "auto":
        return {}  # the catalog's default size
    found = _SIZE.match(size) if isinstance(size, str) else None
    if found is None:
        width = default_model().fields["width"]
        low, high = width.minimum, width.maximum
        raise invalid("size", f"Invalid 'size': {size!r}; expected 'auto' or 'WIDTHxHEIGHT' ({low} to {high} each)")
    return {"width": int(found[1]), "height": int(found[2])}


def _output_format(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if value in ("gif", "svg"):
        raise invalid(
            "output_format", f"'output_format' {value} is not supported: Stable Diffusion 3.5 Turbo makes raster stills"
        )
    formats = default_model().formats
    if not isinstance(value, str) or value not in formats:
        allowed = ", ".join(formats)
        raise invalid("output_format", f"Invalid value for 'output_format': {value!r}; accepted: {allowed}")
    return {"image_format": value}


def _check_compression(value: Any) -> None:
    low = default_model().fields["image_quality"].minimum
    if type(value) is int and value < low:
        raise invalid(
            "output_compression",
            f"'output_compression' must be at least {low}: Segmind's image_quality (which it sets) goes no lower",
        )


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


def _validated(fields: dict[str, Any]) -> Txt2ImgRequest:
    """Segmind's own validation (v1's), its fields named back as OpenAI's parameters."""
    try:
        return validated(default_model(), fields)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        details = [_openai_detail(e) for e in errors]
        raise RequestInvalid("Invalid request: " + "; ".join(d["message"] for d in details), details=details) from None


def _openai_detail(error: Mapping[str, Any]) -> dict[str, str]:
    field = ".".join(str(part) for part in error["loc"]) or "body"
    param = SEGMIND_TO_OPENAI.get(field, field)
    if error["type"] == "missing":
        return {"field": param, "message": f"Missing required parameter: '{param}'"}
    message = error["msg"].removeprefix("Value error, ")
    shown = f"'{param}' ({field})" if param != field else f"'{param}'"
    return {"field": param, "message": f"Invalid {shown}: {message}"}


def validate(body: bytes | None, headers: Mapping[str, str], settings: Settings) -> ImageOrder:
    """Every check that needs no I/O, so a bad request costs nothing."""
    check_body(body, headers, settings)
    return translate(load_json_object(body))


def prefetch_cache_read(
    body: bytes | None, headers: Mapping[str, str], model: str, namespace: str, services: Services
) -> tuple[Parsed | None, Future[ImageResult | None] | None]:
    """As v1's: the body translated once, at the edge, and the cache read of a request with a fixed seed started
    alongside the tenant check. An invalid body is translated again by the route, which refuses it and counts it."""
    try:
        order = validate(body, headers, services.settings)
    except (RequestInvalid, UnknownModel):
        return None, None
    read = start_cache_read(order.request, headers, namespace, services, by_url=order.as_url)
    return (order.request, order), read


def handle_generations(incoming: Incoming, caller: Caller, services: Services) -> Reply:
    """Validate, generate or serve (once per Idempotency-Key), and answer in OpenAI's shape."""
    settings, service = services.settings, services.generation
    with counting_rejections(caller.tenant, services.ledger, service.later):
        parsed = incoming.parsed[1] if incoming.parsed else None
        order = parsed if isinstance(parsed, ImageOrder) else validate(incoming.body, incoming.headers, settings)
        key = idempotency_key(incoming.headers) if services.once else None
    request = order.request
    scope = request_scope(request, caller, incoming, services)
    mode = ResponseMode.URL if order.as_url else ResponseMode.INLINE
    plan = plan_for(request, mode, incoming.headers, settings, idempotent=key is not None)
    keyed = Keyed(key, IDEMPOTENCY_ROUTE, incoming.body, incoming.context) if key is not None else None
    try:
        result, replayed = generate_or_replay(request, scope, plan, keyed, services)
        if not replayed:
            report(request, result, caller.tenant, settings, {"front_door": "openai", **order.recorded})
        reply = deliver(result, order, scope.namespace, incoming.request_id, services)
    except BaseException:
        scope.billing.refund()  # paid images that reach the client neither now nor by a replay are not charged
        raise
    return answered(reply, scope, replayed=replayed)


def deliver(result: ImageResult, order: ImageOrder, namespace: str, request_id: str, services: Services) -> Reply:
    """OpenAI's answer: `b64_json` items, or `url` items (presigned) when asked or when too big for Lambda."""
    settings, service = services.settings, services.generation
    headers = {"x-cache": result.cache.value, IMAGES_DELIVERED: str(result.count)}
    if result.seed is not None:
        headers["x-seed-value"] = str(result.seed)
    fits = fits_inline(result, True, settings.inline_response_max_bytes)
    items: list[dict[str, str]] | None = None
    if order.as_url or not fits:
        if keep_for_urls(result, namespace, request_id, service):
            items = [{"url": url} for url in service.store.presign(result.stored, settings.presigned_url_ttl_seconds)]  # type: ignore[arg-type]
        elif not fits:
            raise undeliverable()
    if items is None:
        items = [{"b64_json": base64.b64encode(image).decode()} for image in result.images or []]
    width, height = order.request.size or (0, 0)
    body = {
        "created": int(time.time()),
        "data": items,
        "output_format": result.image_format,
        "size": f"{width}x{height}",
    }
    return Reply(200, "application/json", json.dumps(body, separators=(",", ":")), headers)


def model_object() -> dict[str, Any]:
    return {"id": MODEL_ID, "object": "model", "created": MODEL_CREATED, "owned_by": OWNED_BY}


def models() -> dict[str, Any]:
    return {"object": "list", "data": [model_object()]}


def model(model_id: str) -> dict[str, Any]:
    if model_id not in MODEL_ALIASES:
        raise UnknownModel(f"The model '{model_id}' does not exist: this gateway serves '{MODEL_ID}' only")
    return model_object()
