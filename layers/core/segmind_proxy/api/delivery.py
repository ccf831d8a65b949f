"""Turning an ImageResult into an answer: raw bytes, base64 JSON, or presigned URLs when asked or when too big to inline."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from segmind_proxy.api.schemas import Base64Images, ImageUrl, ImageUrls
from segmind_proxy.api.services import Services
from segmind_proxy.domain.delivery import fits_inline, undeliverable
from segmind_proxy.domain.images import ImageResult, StoredSet
from segmind_proxy.flows.generate import GenerationService
from segmind_proxy.observability import logger

# How many images the answer carries: fewer than `batch_size` when Segmind returned fewer (charged for those only).
IMAGES_DELIVERED = "x-images-delivered"


class ResponseMode(StrEnum):
    INLINE = "inline"
    URL = "url"


@dataclass
class Reply:
    status: int
    content_type: str
    body: bytes | str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Answer:
    """How the client asked to be answered."""

    as_base64: bool
    mode: ResponseMode
    request_id: str  # names the transient set that backs URLs of images not cached


def deliver(result: ImageResult, answer: Answer, namespace: str, services: Services) -> Reply:
    """Raw bytes, base64 JSON, or presigned URLs when asked or when too big to answer inline."""
    settings, service = services.settings, services.generation
    headers = {"x-cache": result.cache.value, IMAGES_DELIVERED: str(result.count)}
    if result.seed is not None:
        headers["x-seed-value"] = str(result.seed)
    fits = fits_inline(result, answer.as_base64, settings.inline_response_max_bytes)
    if answer.mode is ResponseMode.URL or not fits:
        if keep_for_urls(result, namespace, answer.request_id, service):
            headers["x-response-mode"] = ResponseMode.URL.value
            body = _url_body(result, service, settings.presigned_url_ttl_seconds)
            return Reply(200, "application/json", body, headers)
        if not fits:
            raise undeliverable()
        logger.warning("URL delivery impossible (storage failed); answering inline instead")
    headers["x-response-mode"] = ResponseMode.INLINE.value
    images = result.images or []
    if answer.as_base64:
        encoded = [base64.b64encode(image).decode() for image in images]
        # A batch keeps its shape (`images`) even when Segmind returned fewer images than asked, or one.
        body = Base64Images(image=encoded[0], images=encoded if result.asked > 1 or len(encoded) > 1 else None)
        return Reply(200, "application/json", body.model_dump_json(exclude_none=True), headers)
    return Reply(200, result.content_type, images[0], headers)


def keep_for_urls(result: ImageResult, namespace: str, request_id: str, service: GenerationService) -> bool:
    """Whether the images are in the store, so URLs can point at them: images not cached are kept as a transient set
    named by the request."""
    if result.stored is None and result.images:
        transient = StoredSet.transient(namespace, request_id, result.count, result.image_format)
        if service.keep(transient, result):
            result.stored = transient
    return result.stored is not None


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
