"""Generate or serve: the flow of one txt2img request (v1, a v2 submit's cache check, a v2 job), over the ports.

Read `GenerationService.generate` top to bottom: the cache (or a job's own earlier images), then the lease and
the budget reservation, the upstream call, the store, and the settlement. Identical requests coalesce on a miss
(see `coalescing`); billing is `flows.billing`'s; the answer is shaped by the front door that asked."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial

from segmind_proxy.domain.cache_key import cache_key
from segmind_proxy.domain.cache_policy import CacheStatus
from segmind_proxy.domain.delivery import fits_inline
from segmind_proxy.domain.errors import Dependency, Outage, Unavailable
from segmind_proxy.domain.image_formats import MEDIA_TYPES
from segmind_proxy.domain.images import ImageResult, StoredSet, recorded_count, stored_format
from segmind_proxy.domain.ports import Deferrer, ImageStore, Leases, Marker, Upstream
from segmind_proxy.domain.provenance import MarkLabel, Provenance
from segmind_proxy.domain.request import Txt2ImgRequest
from segmind_proxy.domain.upstream import Generation
from segmind_proxy.flows.billing import Billing
from segmind_proxy.flows.coalescing import Coalescer
from segmind_proxy.flows.run_now import RunNow
from segmind_proxy.flows.scope import Plan, RequestScope
from segmind_proxy.observability import MetricUnit, logger, metrics, tracer

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
        marker: Marker | None = None,
    ) -> None:
        self.store = store
        self.marker = marker  # None: the stack marks no image (PROVENANCE_MARKS off)
        self.upstream = upstream
        self.clock = clock  # the monotonic clock deadlines are on
        self.coalescer = Coalescer(leases, clock, sleep) if leases is not None else None
        self.later = later or RunNow()

    @tracer.capture_method(capture_response=False)
    def generate(self, request: Txt2ImgRequest, scope: RequestScope, plan: Plan) -> ImageResult:
        billing, look_up = scope.billing, plan.policy.reads(request)
        found, own = self._look(request, scope, plan)
        if found is not None and own:
            return _charged_as_generated(found, billing, looked_up=look_up)
        if look_up:
            if found is not None:
                metrics.add_metric(name="CacheHits", unit=MetricUnit.Count, value=1)
                self.count_hit(billing)  # counting a hit can follow the answer
                return found
            metrics.add_metric(name="CacheMisses", unit=MetricUnit.Count, value=1)
        plan.policy.check_may_generate(request)
        self._check_signer(scope)
        # Only requests that read and write the shared cache can share a generation.
        if not (look_up and plan.policy.write and self.coalescer):
            billing.reserve()
            return self._generate(request, scope, plan)
        return self._coalesced(request, scope, plan, f"{scope.namespace}#{cache_key(request)}")

    def _look(self, request: Txt2ImgRequest, scope: RequestScope, plan: Plan) -> tuple[ImageResult | None, bool]:
        """What may be served without generating, and whether it is the owner's own: a job redelivered after its
        worker died between storing its images and recording them finds them (regenerating would pay twice)."""
        look_up = plan.policy.reads(request)
        if plan.resumable and not plan.policy.write:  # under no-store they are in its own set, named after the job
            kept = self._read_set(_own_set(request, scope.namespace, scope.owner), request, plan.by_url)
            if kept is not None:
                return kept, True
        # Only a job that writes the cache can find its own images there, even where it may not read it.
        own_only = plan.resumable and plan.policy.write and not look_up and not request.random_seed
        if not (look_up or own_only):
            return None, False
        found = self._found(request, scope, plan.by_url)
        return found, found is not None and plan.resumable and found.generated_by == scope.owner

    def _coalesced(self, request: Txt2ImgRequest, scope: RequestScope, plan: Plan, lease: str) -> ImageResult:
        """Generate under the lease, or be served the lease holder's images."""
        assert self.coalescer is not None
        billing, owner, deadline = scope.billing, scope.owner, scope.deadline
        # The budget is reserved while the lease is taken: two round trips in the time of one.
        reserving = _background.submit(billing.reserve)
        acquired = self.coalescer.acquire(lease, owner, deadline)
        refused = reserving.exception()
        took_over = False
        # Waiting reads the cache as it is: a read that fails means the holder's images could not be served even
        # once they land, and the holder of a lease that cached them leaves it to lapse (up to its Lambda's
        # timeout), so waiting would end in a 504.
        look = partial(self._read_set_or_raise, _cached_set(request, scope.namespace), request, plan.by_url)
        try:
            while not acquired:
                try:
                    shared = self.coalescer.wait_for(lease, deadline, look)
                except Outage:
                    logger.warning("Cache unreadable while waiting; generating without the lease", exc_info=True)
                    metrics.add_metric(name="StorageErrors", unit=MetricUnit.Count, value=1)
                    break
                if shared is not None:
                    billing.on_hit()  # free: gives back the reservation, if any
                    return shared
                acquired = took_over = self.coalescer.acquire(lease, owner, deadline)
        except BaseException:
            billing.release(failed=False)  # timed out waiting: nothing was generated for this request
            raise
        result: ImageResult | None = None
        try:
            if refused is not None:
                if not took_over:
                    raise refused
                billing.reserve()  # the budget may have changed while we waited
            release = (lambda: self.coalescer.release(lease, owner)) if acquired else None
            result = self._generate(request, scope, plan, release)
            return result
        finally:
            # Once the images are in the cache every identical request finds them there, so the lease can simply
            # lapse (its TTL tidies it): one round trip fewer on a miss. Without them, others must take over now.
            # Images cached after the answer keep identical requests waiting for them until then.
            if acquired and (result is None or not result.cached):
                self.coalescer.release(lease, owner)

    def _generate(
        self,
        request: Txt2ImgRequest,
        scope: RequestScope,
        plan: Plan,
        on_store_failure: Callable[[], None] | None = None,
    ) -> ImageResult:
        """The upstream call, then the store and the settlement, which overlap."""
        generation = self._call_upstream(request, scope)
        result = _made(request, generation, scope.owner, looked_up=plan.policy.reads(request))
        self._mark(result, request, scope)  # once, before anything stores them: every later answer serves these bytes
        # An answer that carries the images whole need not wait for their ledger record nor their cache copy.
        whole = plan.inline is not None and not plan.must_store
        answered_whole = whole and fits_inline(result, plan.inline.as_base64, plan.inline.limit)
        settling: Future[None] | None = None
        if answered_whole:
            scope.billing.settle(result.count, generation.remaining_credits, later=self.later)
        else:  # the ledger settles while the images are stored: two round trips at once
            settling = _background.submit(scope.billing.settle, result.count, generation.remaining_credits)
        # Images whose marking failed are never cached: identical requests get marked ones, generated anew.
        cacheable = result.seed is not None and result.count == request.count
        if plan.policy.write and cacheable and result.provenance is not Provenance.FAILED:
            self._cache(request, scope.namespace, result, answered_whole, on_store_failure)
        if plan.must_store and result.stored is None:
            self._keep_own(request, scope, plan, result)
        try:
            if settling is not None:
                settling.result()
        except Exception:  # the image is paid for and in hand: a billing fault must never lose it
            logger.exception("Settling the ledger failed after generation")
        return result

    def _marks_due(self, scope: RequestScope) -> bool:
        tenant = scope.caller.tenant
        return self.marker is not None and (tenant is None or tenant.marks)

    def _check_signer(self, scope: RequestScope) -> None:
        """Refuse, before anything is paid for, a generation whose images could not be marked as they must be."""
        if not self._marks_due(scope):
            return
        assert self.marker is not None
        try:
            self.marker.ready()
        except Outage as outage:
            logger.error("The provenance signer cannot sign", exc_info=outage)
            metrics.add_metric(name="MarkingFailures", unit=MetricUnit.Count, value=1)
            raise Unavailable(
                Dependency.SIGNING,
                "The gateway cannot mark images as AI-generated right now (its provenance signer is not ready), so it "
                "generates none; nothing was charged. Try again shortly, or tell the operator.",
            ) from outage

    def _mark(self, result: ImageResult, request: Txt2ImgRequest, scope: RequestScope) -> None:
        """Mark the images as AI-generated, where the stack and the tenant want it. The images are paid for: a signer
        that fails leaves them unmarked (and uncached) but still delivered, with an error logged and counted."""
        tenant = scope.caller.tenant
        if self.marker is None or not result.images or not self._marks_due(scope):
            return
        label = MarkLabel(
            request.slug,
            request.model.name,
            datetime.now(UTC).isoformat(timespec="seconds"),
            prompt=request.prompt if tenant is not None and tenant.marks_prompt else None,
        )
        try:
            result.images = [self.marker.mark(image, result.image_format, label) for image in result.images]
        except Exception:
            logger.exception("Marking the images failed: delivering them unmarked", extra={"model": request.slug})
            metrics.add_metric(name="MarkingFailures", unit=MetricUnit.Count, value=1)
            result.provenance = Provenance.FAILED
            return
        result.provenance = Provenance.MARKED

    def _call_upstream(self, request: Txt2ImgRequest, scope: RequestScope) -> Generation:
        try:
            generation = self.upstream.txt2img(request.slug, request.upstream_payload(), deadline=scope.deadline)
        except BaseException:
            scope.billing.release()
            raise
        metrics.add_metric(name="ImagesGenerated", unit=MetricUnit.Count, value=len(generation.images))
        metrics.add_metric(name="UpstreamLatency", unit=MetricUnit.Milliseconds, value=generation.latency_ms)
        if generation.remaining_credits is not None:
            metrics.add_metric(name="RemainingCredits", unit=MetricUnit.Count, value=generation.remaining_credits)
        return generation

    def _cache(
        self,
        request: Txt2ImgRequest,
        namespace: str,
        result: ImageResult,
        later: bool,
        on_failure: Callable[[], None] | None,
    ) -> None:
        """Into the shared cache, keyed by the seed used; `later`: after the answer (the client has the images)."""
        stored = StoredSet.cached(namespace, cache_key(request, seed=result.seed), request.count, request.image_format)
        if later:
            result.storing = stored
            self.later.defer(self._cache_later, stored, result, on_failure)
        elif self.keep(stored, result):
            result.stored = stored

    def _keep_own(self, request: Txt2ImgRequest, scope: RequestScope, plan: Plan, result: ImageResult) -> None:
        """Images that must be stored but are not cached: in a set of their own, where a redelivered job looks for
        them (see `_look`), or a transient one behind presigned URLs."""
        own = (
            _own_set(request, scope.namespace, scope.owner, result.count)
            if plan.resumable
            else StoredSet.transient(
                scope.namespace, result.upstream_request_id or unique_id(), result.count, request.image_format
            )
        )
        if self.keep(own, result):
            result.stored = own

    def prefetch(self, request: Txt2ImgRequest, namespace: str, by_url: bool) -> Future[ImageResult | None]:
        """Start the cache read now, to overlap it with another round trip (the tenant check); nothing is counted
        until `generate` uses it, and an unused one costs one S3 read."""
        return _background.submit(self._read_cache, request, namespace, by_url)

    def lookup(self, request: Txt2ImgRequest, scope: RequestScope, by_url: bool) -> ImageResult | None:
        """A cache hit, counted as one, or None."""
        hit = self._found(request, scope, by_url)
        if hit is not None:
            metrics.add_metric(name="CacheHits", unit=MetricUnit.Count, value=1)
        return hit

    def _found(self, request: Txt2ImgRequest, scope: RequestScope, by_url: bool) -> ImageResult | None:
        if scope.prefetched is not None:
            return scope.prefetched.result()
        return self._read_cache(request, scope.namespace, by_url)

    def presign(self, stored: StoredSet, ttl: int) -> list[str]:
        """URLs of a stored set's images, valid for `ttl` seconds."""
        return self.store.presign(stored, ttl)

    def images_of(self, stored: StoredSet) -> list[bytes] | None:
        """A stored set's images, or None where they are gone."""
        read = self.store.read(stored)
        return read[0] if read is not None else None

    def holds(self, stored: StoredSet) -> bool:
        """Whether a stored set is still in the store (an Outage where the store cannot say)."""
        return self.store.head(stored) is not None

    def count_hit(self, billing: Billing, *, answer_shows_usage: bool = True) -> None:
        """Count a hit for its tenant; after the answer where it may follow it (see `Billing.on_hit`)."""
        billing.on_hit(later=self.later, answer_shows_usage=answer_shows_usage)

    def keep(self, stored: StoredSet, result: ImageResult) -> bool:
        """Write the images; a storage failure is logged and reported, never raised: the client still gets its image."""
        # Each object records the format its bytes are in (Segmind may answer another than asked) and how many
        # images its set holds (it may return fewer than asked): a hit or a replay reads both back.
        metadata = {
            "seed": str(result.seed) if result.seed is not None else "",
            "format": result.image_format,
            "count": str(result.count),
            "provenance": result.provenance.value,
        }
        if result.upstream_request_id:
            metadata["upstream-request-id"] = result.upstream_request_id
        if result.generated_by:
            metadata["generated-by"] = result.generated_by
        try:
            self.store.write(stored, result.images or [], result.content_type, metadata)
        except Outage:
            logger.warning("Could not store images", extra={"prefix": stored.prefix}, exc_info=True)
            metrics.add_metric(name="StorageErrors", unit=MetricUnit.Count, value=1)
            return False
        return True

    def _cache_later(self, stored: StoredSet, result: ImageResult, on_failure: Callable[[], None] | None) -> None:
        """The client has its images already; a failed write only means identical requests must generate anew."""
        if not self.keep(stored, result) and on_failure is not None:
            on_failure()

    def _read_cache(self, request: Txt2ImgRequest, namespace: str, by_url: bool) -> ImageResult | None:
        return self._read_set(_cached_set(request, namespace), request, by_url)

    def _read_set(self, stored: StoredSet, request: Txt2ImgRequest, by_url: bool) -> ImageResult | None:
        """The set, or None; a read that fails reads as a miss (`_read_set_or_raise` raises `Outage` instead)."""
        try:
            return self._read_set_or_raise(stored, request, by_url)
        except Outage:
            logger.warning("Cache lookup failed; generating instead", extra={"prefix": stored.prefix}, exc_info=True)
            metrics.add_metric(name="StorageErrors", unit=MetricUnit.Count, value=1)
            return None

    def _read_set_or_raise(self, stored: StoredSet, request: Txt2ImgRequest, by_url: bool) -> ImageResult | None:
        if by_url:
            found = self.store.head(stored)
            images = None
        else:
            read = self.store.read(stored)
            found, images = (read[1], read[0]) if read else (None, None)
        if found is None:
            return None
        image_format = stored_format(found, request.expected_format)
        count = recorded_count(found, stored.count)
        return ImageResult(
            image_format=image_format,
            content_type=MEDIA_TYPES[image_format],
            seed=request.seed,
            cache=CacheStatus.HIT,
            count=count,
            images=images[:count] if images is not None else None,
            stored=StoredSet(stored.prefix, count, stored.image_format),
            generated_by=found.get("generated-by"),
            asked=request.count,
            provenance=Provenance.recorded(found),
        )


def _made(request: Txt2ImgRequest, generation: Generation, owner: str, *, looked_up: bool) -> ImageResult:
    """What an upstream call made, as a result: the seed is the one used (Segmind's, for a random seed)."""
    return ImageResult(
        image_format=generation.image_format,
        content_type=MEDIA_TYPES[generation.image_format],
        seed=generation.seed if request.random_seed else request.seed,
        cache=CacheStatus.MISS if looked_up else CacheStatus.BYPASS,
        count=len(generation.images),
        images=generation.images,
        generated_by=owner,
        upstream_request_id=generation.upstream_request_id,
        asked=request.count,
    )


def _cached_set(request: Txt2ImgRequest, namespace: str) -> StoredSet:
    """Where the shared cache keeps a request's images."""
    return StoredSet.cached(namespace, cache_key(request), request.count, request.image_format)


def _own_set(request: Txt2ImgRequest, namespace: str, owner: str, count: int | None = None) -> StoredSet:
    """Where a resumable owner (a job) keeps images that do not go into the cache: found again by its name. Read
    back, its first object says how many there are (`count` when written)."""
    return StoredSet.transient(namespace, owner, count or request.count, request.image_format)


def _charged_as_generated(found: ImageResult, billing: Billing, *, looked_up: bool) -> ImageResult:
    """A job's own images from an earlier attempt: charged, once, as generated, never as a hit."""
    found.cache = CacheStatus.MISS if looked_up else CacheStatus.BYPASS  # what that attempt would have answered
    billing.settle(found.count, None)
    return found


def unique_id() -> str:
    """One per call: a lease owner may take its own lease again, and a transient set must never overwrite another's."""
    return uuid.uuid4().hex
