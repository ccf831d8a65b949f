"""Generate or fetch from cache: the domain flow of one txt2img request, independent of HTTP and of AWS."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from .cache_key import cache_key
from .cache_policy import CachePolicy, CacheStatus
from .image_store import ImageStore, StorageErrors, StoredSet
from .models import CATALOG, Txt2ImgRequest
from .observability import MetricUnit, logger, metrics, tracer
from .upstream import SegmindClient


class Billing(Protocol):
    """How a request is charged: nothing for hits, a reservation before the upstream call, settled or released."""

    def on_hit(self) -> None: ...
    def reserve(self) -> None: ...
    def settle(self, images: int, reported_balance: float | None) -> None: ...
    def release(self) -> None: ...


class NoBilling:
    def on_hit(self) -> None:
        pass

    def reserve(self) -> None:
        pass

    def settle(self, images: int, reported_balance: float | None) -> None:
        pass

    def release(self) -> None:
        pass


@dataclass
class ImageResult:
    image_format: str
    content_type: str
    seed: int | None
    cache: CacheStatus
    count: int
    images: list[bytes] | None = None  # None for a hit answered by URL, read from storage never
    stored: StoredSet | None = None  # where the images are in S3, if they are


class GenerationService:
    def __init__(self, store: ImageStore, upstream: SegmindClient) -> None:
        self.store = store
        self.upstream = upstream

    @tracer.capture_method(capture_response=False)
    def generate(
        self,
        request: Txt2ImgRequest,
        *,
        namespace: str,
        policy: CachePolicy,
        by_url: bool,
        deadline: float,
        billing: Billing | None = None,
    ) -> ImageResult:
        billing = billing or NoBilling()
        look_up = policy.read and not request.random_seed
        if look_up:
            hit = self._lookup(request, namespace, by_url)
            if hit is not None:
                metrics.add_metric(name="CacheHits", unit=MetricUnit.Count, value=1)
                billing.on_hit()
                return hit
            metrics.add_metric(name="CacheMisses", unit=MetricUnit.Count, value=1)

        billing.reserve()
        try:
            generation = self.upstream.txt2img(CATALOG.slug, request.upstream_payload(), deadline=deadline)
        except BaseException:
            billing.release()
            raise
        billing.settle(len(generation.images), generation.remaining_credits)
        metrics.add_metric(name="ImagesGenerated", unit=MetricUnit.Count, value=len(generation.images))
        metrics.add_metric(name="UpstreamLatency", unit=MetricUnit.Milliseconds, value=generation.latency_ms)
        if generation.remaining_credits is not None:
            metrics.add_metric(name="RemainingCredits", unit=MetricUnit.Count, value=generation.remaining_credits)

        seed = generation.seed if request.random_seed else request.seed
        result = ImageResult(
            image_format=generation.image_format,
            content_type=CATALOG.image_formats[generation.image_format],
            seed=seed,
            cache=CacheStatus.MISS if look_up else CacheStatus.BYPASS,
            count=len(generation.images),
            images=generation.images,
        )
        if policy.write and seed is not None and len(generation.images) == request.batch_size:
            stored = StoredSet.cached(
                namespace, cache_key(request, seed=seed), request.batch_size, request.image_format
            )
            if self.keep(stored, result, generation.upstream_request_id):
                result.stored = stored
        return result

    def keep(self, stored: StoredSet, result: ImageResult, upstream_request_id: str | None = None) -> bool:
        """Write the images; a storage failure is logged and reported, never raised: the client still gets its image."""
        metadata = {"seed": str(result.seed) if result.seed is not None else "", "format": result.image_format}
        if upstream_request_id:
            metadata["upstream-request-id"] = upstream_request_id
        try:
            self.store.write(stored, result.images or [], result.content_type, metadata)
        except StorageErrors:
            logger.warning("Could not store images", extra={"prefix": stored.prefix}, exc_info=True)
            metrics.add_metric(name="StorageErrors", unit=MetricUnit.Count, value=1)
            return False
        return True

    def _lookup(self, request: Txt2ImgRequest, namespace: str, by_url: bool) -> ImageResult | None:
        stored = StoredSet.cached(namespace, cache_key(request), request.batch_size, request.image_format)
        try:
            if by_url:
                found = self.store.head(stored)
                images = None
            else:
                read = self.store.read(stored)
                found, images = (read[1], read[0]) if read else (None, None)
        except StorageErrors:
            logger.warning("Cache lookup failed; generating instead", extra={"prefix": stored.prefix}, exc_info=True)
            metrics.add_metric(name="StorageErrors", unit=MetricUnit.Count, value=1)
            return None
        if found is None:
            return None
        return ImageResult(
            image_format=request.image_format,
            content_type=request.content_type,
            seed=request.seed,
            cache=CacheStatus.HIT,
            count=request.batch_size,
            images=images,
            stored=stored,
        )
