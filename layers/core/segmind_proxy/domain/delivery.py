"""How big an answer that carries images whole is: Lambda's response limit (6 MB for the whole serialised answer)
decides when images go by URL instead."""

from __future__ import annotations

from segmind_proxy.domain.errors import Dependency, Unavailable
from segmind_proxy.domain.images import ImageResult

# Headroom for the status line, headers and JSON keys around the image bytes.
_ENVELOPE_BYTES = 8192


def _b64_len(size: int) -> int:
    return 4 * ((size + 2) // 3)


def inline_size(result: ImageResult, as_base64: bool) -> int:
    """Bytes the Lambda response would take: API Gateway needs binary bodies base64-encoded too."""
    images = result.images or []
    if not images:
        return 0
    if not as_base64:
        return _b64_len(len(images[0])) + _ENVELOPE_BYTES
    total = sum(_b64_len(len(image)) for image in images)
    if len(images) > 1 or result.asked > 1:
        total += _b64_len(len(images[0]))  # "image" repeats the first of "images"
    return total + _ENVELOPE_BYTES


def fits_inline(result: ImageResult, as_base64: bool, limit: int) -> bool:
    return inline_size(result, as_base64) <= limit


def undeliverable() -> Unavailable:
    """Too large to answer inline, and storage failed: the one answer that cannot carry paid images."""
    return Unavailable(
        Dependency.STORAGE,
        "The images were generated but are too large to return inline and could not be stored; nothing was "
        "charged, retry",
    )
