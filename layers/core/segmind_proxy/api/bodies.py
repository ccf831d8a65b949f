"""A JSON body's checks before it is parsed, the same at every front door: its size, its media type, its encoding."""

from __future__ import annotations

from collections.abc import Mapping

from segmind_proxy.domain.errors import BodyTooLarge, UnsupportedEncoding, UnsupportedMediaType
from segmind_proxy.settings import Settings


def check_content_type(content_type: str | None) -> None:
    media_type = (content_type or "").split(";")[0].strip().lower()
    if media_type != "application/json":
        shown = media_type or "none"
        raise UnsupportedMediaType(f"Content-Type must be application/json (got {shown})")


def check_content_encoding(content_encoding: str | None) -> None:
    # A compressed body would otherwise fail as "not valid JSON", which hides the cause.
    codings = [c.strip().lower() for c in (content_encoding or "").split(",") if c.strip()]
    unsupported = [c for c in codings if c != "identity"]
    if unsupported:
        raise UnsupportedEncoding(
            f"Content-Encoding '{', '.join(unsupported)}' is not supported: send the JSON body uncompressed"
        )


def check_body(body: bytes | None, headers: Mapping[str, str], settings: Settings) -> None:
    """The body's size and media type, checked before it is parsed (every front door's JSON body)."""
    if body is not None and len(body) > settings.max_body_bytes:
        raise BodyTooLarge(f"Request body is larger than {settings.max_body_bytes} bytes")
    check_content_type(headers.get("content-type"))
    check_content_encoding(headers.get("content-encoding"))
