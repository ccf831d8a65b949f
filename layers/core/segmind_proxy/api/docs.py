"""OpenAPI metadata for the API function: one place for the title, description, security and response docs."""

from __future__ import annotations

import copy
import re
from typing import Any

from pydantic import BaseModel

from segmind_proxy.api.delivery import ResponseMode
from segmind_proxy.api.headers import KEY_PATTERN
from segmind_proxy.api.schemas import Base64Images, ErrorBody, ImageUrls, OpenAIErrorBody, OpenAIImagesResponse
from segmind_proxy.domain.catalog import FieldSpec, ModelSpec, Role
from segmind_proxy.domain.image_formats import FORMAT_OF
from segmind_proxy.domain.jobs import MAX_WEBHOOK_URL_LENGTH
from segmind_proxy.domain.provenance import Provenance
from segmind_proxy.domain.request import default_model, request_model
from segmind_proxy.domain.usage import MONTH_PATTERN

TITLE = "Segmind image gateway"
VERSION = "1.0.0"
DESCRIPTION = (
    "A Segmind-compatible proxy for Stable Diffusion 3.5 Turbo: point a Segmind client at this base URL and use "
    "your gateway key as `x-api-key`, or an OpenAI client at `/v1` with the same key as its Bearer key. Images are "
    "cached per tenant; answers carry `x-cache`, `x-request-id` and `x-seed-value` headers."
)
SECURITY: list[dict[str, list[str]]] = [{"apiKey": []}]
# OpenAI's routes take the same key as `Authorization: Bearer <key>`, as OpenAI's clients send it.
BEARER_SECURITY: list[dict[str, list[str]]] = [{"bearer": []}]
REQUEST_BODY_DESCRIPTION = "Segmind's request fields"

# Powertools' OpenAPI models and Swagger UI are imported only when the spec is asked for: they take ~0.5 s to
# import, which no generation request should pay in its cold start.


def openapi_settings() -> dict[str, Any]:
    from aws_lambda_powertools.event_handler.openapi.models import APIKey, APIKeyIn, HTTPBearer

    key = APIKey(name="x-api-key", in_=APIKeyIn.header, description="Your gateway (tenant) key")
    bearer = HTTPBearer(description="The same gateway (tenant) key, as `Authorization: Bearer <key>` (OpenAI's routes)")
    schemes = {"apiKey": key, "bearer": bearer}
    return {"title": TITLE, "version": VERSION, "description": DESCRIPTION, "security_schemes": schemes}


def with_request_bodies(
    spec: dict[str, Any],
    paths: tuple[str, ...],
    model: type[BaseModel],
    server: str = "/",
    description: str = REQUEST_BODY_DESCRIPTION,
) -> dict[str, Any]:
    """Adds the JSON body of each POST path (the handlers read raw bodies, so Powertools cannot see them)."""
    name = model.__name__
    spec["components"]["schemas"][name] = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for path in paths:
        spec["paths"][path]["post"]["requestBody"] = {
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}},
            "description": description,
            "required": True,
        }
    spec["servers"] = [{"url": server}]
    return spec


def with_model_paths(spec: dict[str, Any], paths: tuple[str, ...], models: list[ModelSpec]) -> dict[str, Any]:
    """Each generic Segmind route (`/v1/{model}`) as one path per catalog model, with that model's request schema
    (built from its data file, as validation is) and its page's sample request as the body's example."""
    for generic in paths:
        operation = spec["paths"].pop(generic)["post"]
        for model in models:
            schema = request_model(model)
            name = schema.__name__
            spec["components"]["schemas"][name] = schema.model_json_schema(ref_template="#/components/schemas/{model}")
            each = copy.deepcopy(operation)
            each["operationId"] = f"{operation['operationId']}_{re.sub(r'[^A-Za-z0-9_]', '_', model.slug)}"
            each["summary"] = f"{operation['summary']}: {model.name}"
            each["parameters"] = [p for p in each.get("parameters", []) if p.get("in") != "path"]
            each["requestBody"] = {
                "content": {
                    "application/json": {
                        "schema": {"$ref": f"#/components/schemas/{name}"},
                        "example": model.sample_request,
                    }
                },
                "description": f"{REQUEST_BODY_DESCRIPTION} for {model.name} (from {model.source})",
                "required": True,
            }
            spec["paths"][generic.replace("{model}", model.slug)] = {"post": each}
    return spec


def _parameter(name: str, description: str, schema: dict[str, Any], where: str = "header") -> dict[str, Any]:
    return {"name": name, "in": where, "required": False, "description": description, "schema": schema}


CACHE_CONTROL = _parameter(
    "Cache-Control",
    "`no-cache`: regenerate (BYPASS); `no-store`: do not cache the images; `only-if-cached`: answer from the cache "
    "or 504, never generate",
    {"type": "string", "examples": ["no-cache", "no-store", "only-if-cached"]},
)
IDEMPOTENCY_KEY = _parameter(
    "Idempotency-Key",
    "Retries with the same key and body get the first answer, never a second generation (for JobRetentionHours)",
    {"type": "string", "pattern": KEY_PATTERN},
)
RESPONSE_MODE = _parameter(
    "x-response-mode",
    "`url`: presigned URLs instead of the images (answers too large to inline use URLs by themselves)",
    {"type": "string", "enum": [mode.value for mode in ResponseMode], "default": ResponseMode.INLINE.value},
)
WEBHOOK_URL = _parameter(
    "x-webhook-url",
    "https URL called when the job ends, signed as Standard Webhooks says (`webhook-id`, `webhook-timestamp`, "
    "`webhook-signature`; the former `x-webhook-signature` is deprecated); never a private address",
    {"type": "string", "format": "uri", "pattern": "^https://", "maxLength": MAX_WEBHOOK_URL_LENGTH},
)


MONTH = _parameter("month", "Another month than this one (UTC)", {"type": "string", "pattern": MONTH_PATTERN}, "query")


def with_parameters(spec: dict[str, Any], parameters: dict[tuple[str, str], list[dict[str, Any]]]) -> dict[str, Any]:
    """Adds the headers and query parameters each (method, path) reads from the raw event, unseen by Powertools."""
    for (method, path), listed in parameters.items():
        spec["paths"][path][method]["parameters"] = listed
    return spec


def swagger_html(spec: str) -> str:
    """Swagger UI for a spec, with Powertools' bundled assets (no CDN needed)."""
    from pathlib import Path

    from aws_lambda_powertools.event_handler.openapi import swagger_ui
    from aws_lambda_powertools.event_handler.openapi.swagger_ui import generate_swagger_html

    assets = Path(swagger_ui.__file__).parent
    js = (assets / "swagger-ui-bundle.min.js").read_text(encoding="utf-8")
    css = (assets / "swagger-ui.min.css").read_text(encoding="utf-8")
    # `</` inside the inlined JSON must not close the page's script tag.
    return generate_swagger_html(spec.replace("</", "<\\/"), js, css, "", None)


_HEADERS = {
    "x-cache": {"description": "HIT, MISS or BYPASS", "schema": {"type": "string"}},
    "x-request-id": {"description": "The gateway's request id", "schema": {"type": "string"}},
    "x-seed-value": {"description": "The seed used", "schema": {"type": "string"}},
    "x-images-delivered": {
        "description": "How many images the answer carries: fewer than batch_size when Segmind returned fewer "
        "(only those are charged)",
        "schema": {"type": "string"},
    },
    "x-response-mode": {
        "description": "inline or url (url also when too large to inline)",
        "schema": {"type": "string"},
    },
    "x-provenance": {
        "description": "The marks the images carry: c2pa (IPTC XMP and a C2PA manifest signed by the stack's key, "
        "saying they were generated by a model), none (marks off for the tenant or the stack), or failed (the signer "
        "failed after the images were paid for: delivered unmarked, not cached)",
        "schema": {"type": "string", "enum": [p.value for p in Provenance]},
    },
}
CONTENT_POLICY = (
    "; or the prompt (or negative prompt) was refused by the tenant's content policy: the message names the field, "
    "never what matched, and nothing was generated or charged"
)
SCREEN_DOWN = (
    ", or the content screen (Bedrock Guardrails) could not answer and the tenant's policy refuses unscreened prompts, "
    "or the provenance signer cannot sign (nothing was charged)"
)


def error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"model": ErrorBody}}}


def error_either(description: str) -> dict[str, Any]:
    """An error a Segmind route answers in its own shape, or API Gateway in OpenAI's (its one shape for all routes)."""
    return {"description": description, "content": {"application/json": {"model": ErrorBody | OpenAIErrorBody}}}


def _gateway_error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"model": OpenAIErrorBody}}}


# API Gateway's own answers (template.yaml's GatewayResponses) are one per API: OpenAI's error object on every route.
KEY_REFUSED = _gateway_error(
    "Answered by API Gateway (code missing_api_key or invalid_api_key): no key in the header the route reads "
    "(x-api-key on Segmind's routes, Authorization: Bearer on OpenAI's), a malformed one, or a key it does not know "
    "(mistyped, rotated or deleted)"
)
PLAN_LIMITED = _gateway_error(
    "Answered by API Gateway: your plan's rate (code rate_limit_exceeded) or monthly quota (quota_exceeded, "
    "`x-should-retry: false`)"
)
TENANT_REFUSED = (
    "The tenant is suspended, the key may not be used from this origin, or the tenant's plan does not include the model"
)
# What may refuse any route that needs a key, before it runs.
GATEWAY_RESPONSES: dict[int, dict[str, Any]] = {401: KEY_REFUSED, 403: error(TENANT_REFUSED), 429: PLAN_LIMITED}

ONLY_IF_CACHED_MISS = (
    "the request's Cache-Control has only-if-cached and the images are not cached (nothing was generated or charged)"
)

TXT2IMG_RESPONSES: dict[int, dict[str, Any]] = {
    200: {
        "description": (
            "`base64: false`: the image bytes (Content-Type of the image_format). `base64: true`: JSON with the "
            "base64 image(s). `x-response-mode: url`, a raw batch, or an answer over Lambda's 6 MB limit: JSON "
            "with presigned URLs."
        ),
        "headers": _HEADERS,
        "content": {
            "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
            "image/png": {"schema": {"type": "string", "format": "binary"}},
            "image/webp": {"schema": {"type": "string", "format": "binary"}},
            "application/json": {"model": Base64Images | ImageUrls},
        },
    },
    400: error(
        "Invalid request: every bad field is named; a key given twice in the JSON body is named; or a header the "
        "route reads (Idempotency-Key, and v1's x-response-mode or v2's x-webhook-url) is malformed: the message "
        f"names it{CONTENT_POLICY}"
    ),
    401: KEY_REFUSED,
    402: error("The tenant's monthly budget cannot cover this request (nothing was called or charged)"),
    403: error(TENANT_REFUSED),
    409: error("A request with the same Idempotency-Key is still in progress; see Retry-After"),
    410: error("The images of an Idempotency-Key replay have expired, or could not be kept, in storage"),
    413: error_either("Request body too large (over API Gateway's 10 MB: API Gateway's answer, in OpenAI's shape)"),
    415: error(
        "Content-Type is not application/json, or the body is compressed (a Content-Encoding other than identity)"
    ),
    422: error("Idempotency-Key reused with a different body"),
    429: error_either(
        "Rate limited: by Segmind (Segmind's shape, see Retry-After), or by your plan (API Gateway, OpenAI's shape)"
    ),
    502: error("Upstream failed or rejected the gateway's credentials"),
    503: error(
        "The gateway's Segmind account is out of credits, the usage ledger is unavailable, or the images are too "
        f"large to inline and storage failed (nothing was charged){SCREEN_DOWN}"
    ),
    504: error_either(
        f"Upstream timed out, or {ONLY_IF_CACHED_MISS}; or the function did not answer within API Gateway's 29 s "
        "(API Gateway's answer, in OpenAI's shape)"
    ),
}


def openai_error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"model": OpenAIErrorBody}}}


OPENAI_HEADERS = {
    name: _HEADERS[name]
    for name in ("x-cache", "x-request-id", "x-seed-value", "x-images-delivered", "x-response-mode", "x-provenance")
}

OPENAI_IMAGES_RESPONSES: dict[int, dict[str, Any]] = {
    200: {
        "description": (
            "`data` holds one item per image: `b64_json` (the default), or `url` (presigned) when asked or when the "
            "answer would exceed Lambda's 6 MB limit"
        ),
        "headers": OPENAI_HEADERS,
        "content": {"application/json": {"model": OpenAIImagesResponse}},
    },
    400: openai_error(
        "Invalid request, or a parameter the model cannot honour: `param` names it; or the prompt was refused by the "
        "tenant's content policy (type image_generation_user_error, code moderation_blocked, as OpenAI answers)"
    ),
    401: KEY_REFUSED,
    403: openai_error(f"{TENANT_REFUSED} (permission_error)"),
    404: openai_error("Unknown model, or one the tenant's plan does not include (code model_not_found)"),
    409: openai_error("A request with the same Idempotency-Key is still in progress; see Retry-After"),
    410: openai_error("The images of an Idempotency-Key replay have expired, or could not be kept, in storage"),
    413: openai_error("Request body too large"),
    415: openai_error("Content-Type is not application/json, or the body is compressed"),
    422: openai_error("Idempotency-Key reused with a different body"),
    429: openai_error(
        "The tenant's monthly budget cannot cover this request (code insufficient_quota, `x-should-retry: false`), "
        "or rate limited (see Retry-After)"
    ),
    502: openai_error("Upstream failed or rejected the gateway's credentials (server_error)"),
    503: openai_error(
        f"A dependency is unavailable or the gateway's Segmind account is out of credits (server_error){SCREEN_DOWN}"
    ),
    504: openai_error(f"Upstream timed out, or {ONLY_IF_CACHED_MISS}"),
}


# What may refuse OpenAI's other routes before they run: the function's refusals in OpenAI's shape.
OPENAI_GATEWAY_RESPONSES: dict[int, dict[str, Any]] = {
    401: KEY_REFUSED,
    403: openai_error(f"{TENANT_REFUSED} (permission_error)"),
    429: PLAN_LIMITED,
}


def with_openai_requests(spec: dict[str, Any], models: list[ModelSpec]) -> dict[str, Any]:
    """OpenAI's request body as one schema per model (`oneOf`, told apart by `model`): OpenAI's fields bounded by the
    model's own (`n`, `size`, `output_format`, `output_compression`), and the model's other fields as extensions,
    exactly as v1 validates them. Only the default model's may leave `model` out."""
    from segmind_proxy.api.openai_images import extensions

    schemas = spec["components"]["schemas"]
    base = schemas["OpenAIImageRequest"]
    branches = []
    for model in models:
        fields = request_model(model).model_json_schema(ref_template="#/components/schemas/{model}")["properties"]
        branch = copy.deepcopy(base)
        properties = branch["properties"]
        names: list[str | None] = [model.openai_id, model.slug]
        if model.slug == default_model().slug:
            names.append(None)  # absent or null: the default model
        else:
            branch["required"] = [*branch.get("required", []), "model"]
        properties["model"] = {"enum": names, "description": model.name}
        _openai_bounds(properties, model)
        if _size_required(model):  # Seedream's aspect_ratio: `size` says which, and has no `auto`
            properties["size"] = properties["size"]["anyOf"][0]
            properties["size"]["enum"] = [size for size in properties["size"].get("enum", []) if size != "auto"]
            branch["required"] = [*branch.get("required", []), "size"]
        properties["prompt"] = fields[model.field_of(Role.PROMPT) or "prompt"]  # the model's bounds of a prompt
        properties |= {name: fields[name] for name in extensions(model)}
        branch["title"] = name = f"OpenAIImageRequest_{re.sub(r'[^A-Za-z0-9_]', '_', model.openai_id)}"
        schemas[name] = branch
        branches.append({"$ref": f"#/components/schemas/{name}"})
    schemas["OpenAIImageRequest"] = {"oneOf": branches, "description": base.get("description", "")}
    return spec


def _openai_bounds(properties: dict[str, Any], model: ModelSpec) -> None:
    """OpenAI's parameters as far as the model's fields reach: a parameter with nowhere to go is left out (sent, it
    is refused, named)."""
    count = model.fields.get(model.field_of(Role.COUNT) or "")
    properties["n"] = {
        "anyOf": [{"type": "integer", "minimum": 1, "maximum": count.maximum if count else 1}, {"type": "null"}]
    }
    properties["size"] = {"anyOf": [{"type": "string", **_size_schema(model)}, {"type": "null"}]}
    properties["output_format"] = {"enum": [*(FORMAT_OF[media] for media in model.output_formats.values()), None]}
    quality = model.fields.get(model.field_of(Role.QUALITY) or "")
    if quality is None:
        del properties["output_compression"]
    else:
        properties["output_compression"] = {
            "anyOf": [{"type": "integer", "minimum": quality.minimum, "maximum": quality.maximum}, {"type": "null"}]
        }


def _size_required(model: ModelSpec) -> bool:
    roles = (Role.WIDTH, Role.HEIGHT, Role.ASPECT_RATIO)
    return any(model.fields[name].required for name in (model.field_of(role) for role in roles) if name)


def _size_schema(model: ModelSpec) -> dict[str, Any]:
    """What `size` may be for the model: WIDTHxHEIGHT within its fields' bounds, or one size per aspect ratio."""
    width, height = (model.fields.get(model.field_of(role) or "") for role in (Role.WIDTH, Role.HEIGHT))
    if width is not None and height is not None:
        return {"pattern": f"^(auto|{_integer_pattern(width)}x{_integer_pattern(height)})$"}
    ratio = model.fields.get(model.field_of(Role.ASPECT_RATIO) or "")
    sizes = []
    for value in (ratio.enum or ()) if ratio else ():
        wide, high = (int(part) for part in value.split(":"))
        sizes.append(
            f"{1024 if wide >= high else round(1024 * wide / high)}x{1024 if high >= wide else round(1024 * high / wide)}"
        )
    return {"enum": ["auto", *sizes]}


def _integer_pattern(spec: FieldSpec) -> str:
    """A regular expression of the integers a field takes, for the spec (the validator is the authority)."""
    low = int(spec.minimum) if spec.minimum is not None else 1
    high = int(spec.maximum) if spec.maximum is not None else 99999
    if spec.multiple_of:
        return "(" + "|".join(str(v) for v in range(low + -low % spec.multiple_of, high + 1, spec.multiple_of)) + ")"
    parts = []
    for digits in range(len(str(low)), len(str(high)) + 1):
        start, stop = max(low, 10 ** (digits - 1) if digits > 1 else 0), min(high, 10**digits - 1)
        if start <= stop:
            parts.append(_same_length(str(start), str(stop)))
    return "(" + "|".join(parts) + ")"


def _same_length(low: str, high: str) -> str:
    """A regular expression of the integers from `low` to `high`, written with as many digits."""
    if not low:
        return ""
    if low == "0" * len(low) and high == "9" * len(high):
        return r"\d" * len(low)
    if low[0] == high[0]:
        return low[0] + _same_length(low[1:], high[1:])
    rest = len(low) - 1
    parts = [low[0] + _same_length(low[1:], "9" * rest)]
    if int(high[0]) - int(low[0]) > 1:
        parts.append(f"[{int(low[0]) + 1}-{int(high[0]) - 1}]" + r"\d" * rest)
    parts.append(high[0] + _same_length("0" * rest, high[1:]))
    return "(?:" + "|".join(parts) + ")"


def with_segmind_fields(
    spec: dict[str, Any], schema_name: str, source: type[BaseModel], fields: tuple[str, ...]
) -> dict[str, Any]:
    """The OpenAI request's Segmind fields documented exactly as v1 validates them (one source for both)."""
    properties = source.model_json_schema(ref_template="#/components/schemas/{model}")["properties"]
    target = spec["components"]["schemas"][schema_name]["properties"]
    for name in fields:
        target[name] = properties[name]
    return spec
