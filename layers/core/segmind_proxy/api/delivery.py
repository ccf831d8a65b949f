"""How the images reach the client, the same for every front door that answers with them: whole, or as presigned
URLs when asked or when too big to answer inline. A door shapes the answer's body (see `synchronous.Door`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from segmind_proxy.api.services import Services
from segmind_proxy.domain.delivery import fits_inline, undeliverable
from segmind_proxy.domain.images import ImageResult, StoredSet
from segmind_proxy.domain.request import Txt2ImgRequest
from segmind_proxy.flows.generate import GenerationService
from segmind_proxy.observability import logger

# How many images the answer carries: fewer than `batch_size` when Segmind returned fewer (charged for those only).
IMAGES_DELIVERED = "x-images-delivered"
RESPONSE_MODE_HEADER = "x-response-mode"
# The marks the images carry: `c2pa` (XMP and a signed C2PA manifest), `none`, or `failed` (the signer failed).
PROVENANCE_HEADER = "x-provenance"


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
class Order:
    """A request as its front door translated it, and how its client wants the images."""

    request: Txt2ImgRequest
    mode: ResponseMode
    as_base64: bool  # whole images travel as base64 JSON, not as the raw bytes of one image
    route: str  # where an Idempotency-Key is scoped: a key is its tenant's, on one route (and model) of one door
    recorded: Mapping[str, str] = field(default_factory=dict)  # logged with the request, never sent upstream


@dataclass(frozen=True)
class Delivery:
    """The images as they reach the client: whole (`urls` None), or as presigned URLs valid for `ttl` seconds; and
    the headers every answer with images carries."""

    result: ImageResult
    urls: list[str] | None
    ttl: int
    headers: dict[str, str]


def deliver(result: ImageResult, order: Order, namespace: str, request_id: str, services: Services) -> Delivery:
    """Whole, or presigned URLs when asked or when too big to answer inline (a URL answer whose images cannot be
    stored is answered whole where they fit, and logged)."""
    settings, service = services.settings, services.generation
    headers = {
        "x-cache": result.cache.value,
        IMAGES_DELIVERED: str(result.count),
        PROVENANCE_HEADER: result.provenance.value,
    }
    if result.seed is not None:
        headers["x-seed-value"] = str(result.seed)
    fits = fits_inline(result, order.as_base64, settings.inline_response_max_bytes)
    ttl = settings.presigned_url_ttl_seconds
    if order.mode is ResponseMode.URL or not fits:
        if keep_for_urls(result, namespace, request_id, service):
            assert result.stored is not None
            headers[RESPONSE_MODE_HEADER] = ResponseMode.URL.value
            return Delivery(result, service.presign(result.stored, ttl), ttl, headers)
        if not fits:
            raise undeliverable()
        logger.warning("URL delivery impossible (storage failed); answering inline instead")
    headers[RESPONSE_MODE_HEADER] = ResponseMode.INLINE.value
    return Delivery(result, None, ttl, headers)


def keep_for_urls(result: ImageResult, namespace: str, request_id: str, service: GenerationService) -> bool:
    """Whether the images are in the store, so URLs can point at them: images not cached are kept as a transient set
    named by the request."""
    if result.stored is None and result.images:
        transient = StoredSet.transient(namespace, request_id, result.count, result.image_format)
        if service.keep(transient, result):
            result.stored = transient
    return result.stored is not None
