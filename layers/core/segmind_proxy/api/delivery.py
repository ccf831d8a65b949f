"""Turning an ImageResult into an answer: raw bytes, base64 JSON, or presigned URLs when asked or when too big to inline."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from segmind_proxy.api.schemas import Base64Images, ImageUrl, ImageUrls
from segmind_proxy.domain.errors import Dependency, Unavailable
from segmind_proxy.domain.images import ImageResult, StoredSet
from segmind_proxy.flows.generate import GenerationService
from segmind_proxy.observability import logger

# How many images the answer carries: fewer than `batch_size` when Segmind returned fewer (charged for those only).
IMAGES_DELIVERED = "x-images-delivered"
# Headroom for the status line, headers and JSON keys around the image bytes.
_ENVELOPE_BYTES = 8192


class ResponseMode(StrEnum):
    INLINE = "inline"
    URL = "url"


@dataclass
class Reply:
    status: int
    content_type: str
    body: bytes | str
    headers: dict[str, str] = field(default_factory=dict)


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


def deliver(
    result: ImageResult,
    *,
    as_base64: bool,
    mode: ResponseMode,
    service: GenerationService,
    namespace: str,
    request_id: str,
    url_ttl: int,
    inline_limit: int,
) -> Reply:
    headers = {"x-cache": result.cache.value, IMAGES_DELIVERED: str(result.count)}
    if result.seed is not None:
        headers["x-seed-value"] = str(result.seed)
    fits = fits_inline(result, as_base64, inline_limit)
    if mode is ResponseMode.URL or not fits:
        if result.stored is None and result.images:
            transient = StoredSet.transient(namespace, request_id, result.count, result.image_format)
            if service.keep(transient, result):
                result.stored = transient
        if result.stored is not None:
            headers["x-response-mode"] = ResponseMode.URL.value
            return Reply(200, "application/json", _url_body(result, service, url_ttl), headers)
        if not fits:
            raise undeliverable()
        logger.warning("URL delivery impossible (storage failed); answering inline instead")
    headers["x-response-mode"] = ResponseMode.INLINE.value
    images = result.images or []
    if as_base64:
        encoded = [base64.b64encode(image).decode() for image in images]
        # A batch keeps its shape (`images`) even when Segmind returned fewer images than asked, or one.
        body = Base64Images(image=encoded[0], images=encoded if result.asked > 1 or len(encoded) > 1 else None)
        return Reply(200, "application/json", body.model_dump_json(exclude_none=True), headers)
    return Reply(200, result.content_type, images[0], headers)


def _url_body(result: ImageResult, service: GenerationService, ttl: int) -> str:
    assert result.stored is not None
    expires_at = (datetime.now(UTC) + timedelta(seconds=ttl)).isoformat(timespec="seconds")
    urls = service.store.presign(result.stored, ttl)
    return ImageUrls(
        images=[ImageUrl(url=url, content_type=result.content_type) for url in urls],
        expires_in=ttl,
        expires_at=expires_at,
        cache=result.cache.value,
        seed=result.seed,
        image_format=result.image_format,
    ).model_dump_json()
