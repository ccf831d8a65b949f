"""Generate or fetch from cache: the domain flow of one txt2img request, independent of HTTP and of AWS.

On a miss, identical requests (same tenant namespace and cache key) coalesce across invocations: the one holding
the lease calls the upstream and stores the images; the others wait for them in S3 and are served as hits."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial

from segmind_proxy.domain.cache_key import cache_key
from segmind_proxy.domain.cache_policy import CachePolicy, CacheStatus
from segmind_proxy.domain.errors import CoalesceTimeout, Outage
from segmind_proxy.domain.images import ImageResult, StoredSet, recorded_count, stored_format
from segmind_proxy.domain.ports import Deferrer, ImageStore, Leases, Upstream
from segmind_proxy.domain.request import CATALOG, Txt2ImgRequest
from segmind_proxy.flows.billing import Billing, NoBilling
from segmind_proxy.flows.run_now import RunNow
from segmind_proxy.observability import MetricUnit, logger, metrics, tracer

WAIT_FIRST_POLL_SECONDS = 0.1
WAIT_MAX_POLL_SECONDS = 1.0
# Round trips that overlap others (cache prefetch, budget reservation, ledger settlement); each request uses at most
# two at once, and the pool is per container as Lambda runs one request at a time.
_background = ThreadPoolExecutor(max_workers=4, thread_name_prefix="overlap")


class GenerationService:
    def __init__(
        self,
        store: ImageStore,
        upstream: Upstream,
        leases: Leases | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        later: Deferrer | None = None,
    ) -> None:
        self.store = store
        self.upstream = upstream
        self.leases = leases
        self.later = later or RunNow()
        self._clock = clock
        self._sleep = sleep

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
        owner: str = "",
        must_store: bool = False,
        prefetched: Future[ImageResult | None] | None = None,
        store_later: Callable[[ImageResult], bool] | None = None,
        resumable: bool = False,
    ) -> ImageResult:
        """`deadline` is on the monotonic clock. `must_store`: the images must end up in S3 (URLs, idempotent replays).
        `prefetched`: a cache read started earlier for this request and namespace (see `prefetch`).
        `store_later`: true for a result that the answer carries whole, so caching it and settling its bill can
        wait for `self.later`.
        `resumable`: `owner` is the same on every attempt (a job), so images it generated earlier are its own."""
        billing = billing or NoBilling()
        owner = owner or unique_id()
        look_up = policy.reads(request)
        # A job redelivered after its worker died between storing the images and recording them looks for what
        # its earlier attempt made, even under no-cache or no-store: regenerating would pay Segmind twice.
        if resumable and not policy.write:
            kept = self._read_set(_own_set(request, namespace, owner), request, by_url)  # named after the job
            if kept is not None:
                return _charged_as_generated(kept, billing, looked_up=look_up)
        # Only a job that writes the cache can find its own images there (under no-store they are in its own set).
        own_only = resumable and policy.write and not look_up and not request.random_seed
        if look_up or own_only:
            found = self._found(request, namespace, by_url, prefetched)
            if found is not None and resumable and found.generated_by == owner:
                return _charged_as_generated(found, billing, looked_up=look_up)
            if look_up and found is not None:
                metrics.add_metric(name="CacheHits", unit=MetricUnit.Count, value=1)
                billing.on_hit(later=self.later)  # counting a hit can follow the answer
                return found
            if look_up:
                metrics.add_metric(name="CacheMisses", unit=MetricUnit.Count, value=1)
        policy.check_may_generate(request)
        # Only requests that read and write the shared cache can share a generation.
        lease_key = f"{namespace}#{cache_key(request)}" if look_up and policy.write and self.leases else None
        generate_now = partial(
            self._generate,
            request,
            namespace,
            policy,
            deadline,
            billing,
            must_store,
            look_up,
            store_later,
            owner=owner,
            resumable=resumable,
        )
        if lease_key is None:
            billing.reserve()
            return generate_now()
        # The budget is reserved while the lease is taken: two round trips in the time of one.
        reserving = _background.submit(billing.reserve)
        acquired = self._acquire(lease_key, owner, deadline)
        refused = reserving.exception()
        took_over = False
        try:
            while not acquired:
                shared = self._wait_for(request, namespace, by_url, lease_key, deadline)
                if shared is not None:
                    billing.on_hit()  # free: gives back the reservation, if any
                    return shared
                acquired = took_over = self._acquire(lease_key, owner, deadline)
        except BaseException:
            billing.release(failed=False)  # timed out waiting: nothing was generated for this request
            raise
        result: ImageResult | None = None
        try:
            if refused is not None:
                if not took_over:
                    raise refused
                billing.reserve()  # the budget may have changed while we waited
            result = generate_now(on_store_failure=lambda: self._release(lease_key, owner))
            return result
        finally:
            # Once the images are in the cache every identical request finds them there, so the lease can simply
            # lapse (its TTL tidies it): one round trip fewer on a miss. Without them, others must take over now.
            # Images cached after the answer keep identical requests waiting for them until then.
            if result is None or not result.cached:
                self._release(lease_key, owner)

    def prefetch(self, request: Txt2ImgRequest, namespace: str, by_url: bool) -> Future[ImageResult | None]:
        """Start the cache read now, to overlap it with another round trip (the tenant check); nothing is counted
        until `generate` uses it, and an unused one costs one S3 read."""
        return _background.submit(self._read_cache, request, namespace, by_url)

    def lookup(
        self,
        request: Txt2ImgRequest,
        namespace: str,
        by_url: bool,
        prefetched: Future[ImageResult | None] | None = None,
    ) -> ImageResult | None:
        """A cache hit, counted as one, or None."""
        hit = self._found(request, namespace, by_url, prefetched)
        if hit is not None:
            metrics.add_metric(name="CacheHits", unit=MetricUnit.Count, value=1)
        return hit

    def _found(
        self,
        request: Txt2ImgRequest,
        namespace: str,
        by_url: bool,
        prefetched: Future[ImageResult | None] | None,
    ) -> ImageResult | None:
        return prefetched.result() if prefetched is not None else self._read_cache(request, namespace, by_url)

    def _generate(
        self,
        request: Txt2ImgRequest,
        namespace: str,
        policy: CachePolicy,
        deadline: float,
        billing: Billing,
        must_store: bool,
        looked_up: bool,
        store_later: Callable[[ImageResult], bool] | None = None,
        owner: str | None = None,
        on_store_failure: Callable[[], None] | None = None,
        resumable: bool = False,
    ) -> ImageResult:
        try:
            generation = self.upstream.txt2img(CATALOG.slug, request.upstream_payload(), deadline=deadline)
        except BaseException:
            billing.release()
            raise
        metrics.add_metric(name="ImagesGenerated", unit=MetricUnit.Count, value=len(generation.images))
        metrics.add_metric(name="UpstreamLatency", unit=MetricUnit.Milliseconds, value=generation.latency_ms)
        if generation.remaining_credits is not None:
            metrics.add_metric(name="RemainingCredits", unit=MetricUnit.Count, value=generation.remaining_credits)

        seed = generation.seed if request.random_seed else request.seed
        result = ImageResult(
            image_format=generation.image_format,
            content_type=CATALOG.image_formats[generation.image_format],
            seed=seed,
            cache=CacheStatus.MISS if looked_up else CacheStatus.BYPASS,
            count=len(generation.images),
            images=generation.images,
            generated_by=owner,
            asked=request.batch_size,
        )
        # An answer that carries the images whole need not wait for their ledger record nor their cache copy.
        answered_whole = not must_store and store_later is not None and store_later(result)
        settling: Future[None] | None = None
        if answered_whole:
            billing.settle(result.count, generation.remaining_credits, later=self.later)
        else:  # the ledger settles while the images are stored: two round trips at once
            settling = _background.submit(billing.settle, result.count, generation.remaining_credits)
        if policy.write and seed is not None and len(generation.images) == request.batch_size:
            stored = StoredSet.cached(
                namespace, cache_key(request, seed=seed), request.batch_size, request.image_format
            )
            if answered_whole:
                result.storing = stored
                self.later.defer(self._cache_later, stored, result, generation.upstream_request_id, on_store_failure)
            elif self.keep(stored, result, generation.upstream_request_id):
                result.stored = stored
        if must_store and result.stored is None:
            transient = (
                _own_set(request, namespace, owner, result.count)  # where a redelivered job looks (see `generate`)
                if resumable and owner
                else StoredSet.transient(
                    namespace, generation.upstream_request_id or unique_id(), result.count, request.image_format
                )
            )
            if self.keep(transient, result, generation.upstream_request_id):
                result.stored = transient
        try:
            if settling is not None:
                settling.result()
        except Exception:  # the image is paid for and in hand: a billing fault must never lose it
            logger.exception("Settling the ledger failed after generation")
        return result

    def keep(self, stored: StoredSet, result: ImageResult, upstream_request_id: str | None = None) -> bool:
        """Write the images; a storage failure is logged and reported, never raised: the client still gets its image."""
        # Each object records the format its bytes are in (Segmind may answer another than asked) and how many
        # images its set holds (it may return fewer than asked): a hit or a replay reads both back.
        metadata = {
            "seed": str(result.seed) if result.seed is not None else "",
            "format": result.image_format,
            "count": str(result.count),
        }
        if upstream_request_id:
            metadata["upstream-request-id"] = upstream_request_id
        if result.generated_by:
            metadata["generated-by"] = result.generated_by
        try:
            self.store.write(stored, result.images or [], result.content_type, metadata)
        except Outage:
            logger.warning("Could not store images", extra={"prefix": stored.prefix}, exc_info=True)
            metrics.add_metric(name="StorageErrors", unit=MetricUnit.Count, value=1)
            return False
        return True

    def _cache_later(
        self,
        stored: StoredSet,
        result: ImageResult,
        upstream_request_id: str | None,
        on_failure: Callable[[], None] | None,
    ) -> None:
        """The client has its images already; a failed write only means identical requests must generate anew."""
        if not self.keep(stored, result, upstream_request_id) and on_failure is not None:
            on_failure()

    def _read_cache(self, request: Txt2ImgRequest, namespace: str, by_url: bool) -> ImageResult | None:
        stored = StoredSet.cached(namespace, cache_key(request), request.batch_size, request.image_format)
        return self._read_set(stored, request, by_url)

    def _read_set(self, stored: StoredSet, request: Txt2ImgRequest, by_url: bool) -> ImageResult | None:
        try:
            if by_url:
                found = self.store.head(stored)
                images = None
            else:
                read = self.store.read(stored)
                found, images = (read[1], read[0]) if read else (None, None)
        except Outage:
            logger.warning("Cache lookup failed; generating instead", extra={"prefix": stored.prefix}, exc_info=True)
            metrics.add_metric(name="StorageErrors", unit=MetricUnit.Count, value=1)
            return None
        if found is None:
            return None
        image_format = stored_format(found, request.image_format)
        count = recorded_count(found, stored.count)
        return ImageResult(
            image_format=image_format,
            content_type=CATALOG.image_formats[image_format],
            seed=request.seed,
            cache=CacheStatus.HIT,
            count=count,
            images=images[:count] if images is not None else None,
            stored=StoredSet(stored.prefix, count, stored.image_format),
            generated_by=found.get("generated-by"),
            asked=request.batch_size,
        )

    # -- coalescing ------------------------------------------------------------
    def _acquire(self, key: str, owner: str, deadline: float) -> bool:
        """True: we generate. Lease trouble never blocks a request: it generates uncoalesced."""
        assert self.leases is not None
        try:
            # The lease lasts as long as this invocation can: a crashed owner frees it by then.
            return self.leases.acquire(key, owner, max(1.0, deadline - self._clock()) + 5)
        except Outage:
            logger.warning("Lease unavailable; generating without coalescing", exc_info=True)
            return True

    def _release(self, key: str, owner: str) -> None:
        assert self.leases is not None
        try:
            self.leases.release(key, owner)
        except Outage:
            logger.warning("Could not release lease; it expires by itself", exc_info=True)

    def _wait_for(
        self, request: Txt2ImgRequest, namespace: str, by_url: bool, key: str, deadline: float
    ) -> ImageResult | None:
        """Wait for the lease holder's images. None: the holder is gone without them (take over)."""
        assert self.leases is not None
        pause = WAIT_FIRST_POLL_SECONDS
        while self._clock() + pause < deadline:
            self._sleep(pause)
            pause = min(WAIT_MAX_POLL_SECONDS, pause * 1.5)
            shared = self._read_cache(request, namespace, by_url)
            if shared is not None:
                metrics.add_metric(name="CoalescedRequests", unit=MetricUnit.Count, value=1)
                shared.coalesced = True
                return shared
            try:
                if not self.leases.held(key):
                    return self._read_cache(request, namespace, by_url)  # a last look: it may have just landed
            except Outage:
                return None
        raise CoalesceTimeout("Timed out waiting for an identical request's images; retry")


def _own_set(request: Txt2ImgRequest, namespace: str, owner: str, count: int | None = None) -> StoredSet:
    """Where a resumable owner (a job) keeps images that do not go into the cache: found again by its name. Read
    back, its first object says how many there are (`count` when written)."""
    return StoredSet.transient(namespace, owner, count or request.batch_size, request.image_format)


def _charged_as_generated(found: ImageResult, billing: Billing, *, looked_up: bool) -> ImageResult:
    """A job's own images from an earlier attempt: charged, once, as generated, never as a hit."""
    found.cache = CacheStatus.MISS if looked_up else CacheStatus.BYPASS  # what that attempt would have answered
    billing.settle(found.count, None)
    return found


def unique_id() -> str:
    """One per call: a lease owner may take its lease again, and a transient set must never overwrite another's."""
    return uuid.uuid4().hex
