"""The txt2img endpoint, HTTP-shaped but free of any web framework: checks, then generate, then deliver."""

from __future__ import annotations

from collections.abc import Mapping

from .cache_policy import CachePolicy
from .delivery import Reply, ResponseMode, deliver
from .errors import RequestInvalid
from .generation import GenerationService
from .image_store import namespace_for
from .models import parse_request
from .settings import Settings

RESPONSE_MODE_HEADER = "x-response-mode"


def response_mode(headers: Mapping[str, str]) -> ResponseMode:
    raw = (headers.get(RESPONSE_MODE_HEADER) or ResponseMode.INLINE.value).strip().lower()
    try:
        return ResponseMode(raw)
    except ValueError:
        allowed = ", ".join(mode.value for mode in ResponseMode)
        raise RequestInvalid(f"Header '{RESPONSE_MODE_HEADER}' must be one of: {allowed}") from None


def check_content_type(content_type: str | None) -> None:
    media_type = (content_type or "").split(";")[0].strip().lower()
    if media_type != "application/json":
        shown = media_type or "none"
        raise RequestInvalid(f"Content-Type must be application/json (got {shown})", status=415)


def handle_txt2img(
    *,
    body: bytes | None,
    headers: Mapping[str, str],
    api_key_id: str | None,
    request_id: str,
    deadline: float,
    service: GenerationService,
    settings: Settings,
) -> Reply:
    """`headers` must be case-insensitive (lower-cased keys)."""
    if body is not None and len(body) > settings.max_body_bytes:
        raise RequestInvalid(f"Request body is larger than {settings.max_body_bytes} bytes", status=413)
    check_content_type(headers.get("content-type"))
    mode = response_mode(headers)
    request = parse_request(body)
    if mode is ResponseMode.INLINE and not request.base64 and request.batch_size > 1:
        raise RequestInvalid(
            "'batch_size' > 1 needs 'base64': true or the 'x-response-mode: url' header: a raw answer carries one image"
        )
    namespace = namespace_for(api_key_id)
    result = service.generate(
        request,
        namespace=namespace,
        policy=CachePolicy.from_header(headers.get("cache-control")),
        by_url=mode is ResponseMode.URL,
        deadline=deadline,
    )
    return deliver(
        result,
        as_base64=request.base64,
        mode=mode,
        service=service,
        namespace=namespace,
        request_id=request_id,
        url_ttl=settings.presigned_url_ttl_seconds,
        inline_limit=settings.inline_response_max_bytes,
    )
