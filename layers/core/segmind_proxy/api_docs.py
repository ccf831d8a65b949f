"""OpenAPI metadata for the API function: one place for the title, description, security and response docs."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler.openapi.models import APIKey, APIKeyIn

from .schemas import Base64Images, ErrorBody, ImageUrls

TITLE = "Segmind image gateway"
VERSION = "1.0.0"
DESCRIPTION = (
    "A Segmind-compatible proxy for Stable Diffusion 3.5 Turbo: point a Segmind client at this base URL and use "
    "your gateway key as `x-api-key`. Images are cached per tenant; answers carry `x-cache`, `x-request-id` and "
    "`x-seed-value` headers."
)
SECURITY_SCHEMES = {"apiKey": APIKey(name="x-api-key", in_=APIKeyIn.header, description="Your gateway (tenant) key")}
SECURITY: list[dict[str, list[str]]] = [{"apiKey": []}]

_HEADERS = {
    "x-cache": {"description": "HIT, MISS or BYPASS", "schema": {"type": "string"}},
    "x-request-id": {"description": "The gateway's request id", "schema": {"type": "string"}},
    "x-seed-value": {"description": "The seed used", "schema": {"type": "string"}},
    "x-response-mode": {
        "description": "inline or url (url also when too large to inline)",
        "schema": {"type": "string"},
    },
}


def error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"model": ErrorBody}}}


# What API Gateway itself may answer on any route that needs a key.
GATEWAY_RESPONSES: dict[int, dict[str, Any]] = {
    403: error("Missing or invalid x-api-key, suspended tenant, or origin not allowed for the key"),
    429: error("Rate limited by your plan (Too Many Requests / Limit Exceeded)"),
}

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
    400: error("Invalid request: every bad field is named"),
    403: error("Missing or invalid x-api-key"),
    413: error("Request body too large"),
    415: error("Content-Type is not application/json"),
    429: error("Rate limited (by your plan or upstream); see Retry-After"),
    502: error("Upstream failed or rejected the gateway's credentials"),
    503: error("The gateway's Segmind account is out of credits"),
    504: error("Upstream timed out"),
}
