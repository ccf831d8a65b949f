"""Generate or serve (GenerationService) on the fakes: a hit is served without an upstream call and free; a miss is
generated once, billed (reserved, then settled or released), and cached; identical requests wait for the lease
holder's images, or take over when it is gone; a storage failure never loses a paid image."""

from __future__ import annotations

import pytest

from segmind_proxy.domain.cache_key import cache_key
from segmind_proxy.domain.cache_policy import CachePolicy, CacheStatus
from segmind_proxy.domain.errors import (
    CoalesceTimeout,
    Dependency,
    FailureKind,
    NotCached,
    Unavailable,
    UpstreamFailure,
)
from segmind_proxy.domain.request import default_model, validated
from segmind_proxy.domain.usage import BudgetExceeded
from segmind_proxy.flows.billing import TenantBilling
from segmind_proxy.flows.generate import GenerationService
from tests.support.aws import make_tenant
from tests.support.flows import generate as generate_as_a_front_door

REQUEST = validated(default_model(), {"prompt": "a red fox", "width": 128, "height": 128, "seed": 42})
LEASE = f"t#{cache_key(REQUEST)}"
ESTIMATE = 0.01


@pytest.fixture
def service(store, segmind, leases, clock, deferrer):
    return GenerationService(store, segmind, leases, clock=clock, sleep=clock.sleep, later=deferrer)


@pytest.fixture
def acme(tenants):
    return make_tenant(tenants, budget_credits=1.0)


def billing(ledger, tenant, estimate=ESTIMATE, images=1):
    return TenantBilling(ledger, tenant, estimate, images)


def generate(service, request=REQUEST, **options):
    return generate_as_a_front_door(service, request, **options)


def during_the_wait(clock, after_sleeps, action):
    """Runs `action` once the waiting request has slept `after_sleeps` times (what another invocation does then)."""
    sleep = clock.sleep

    def sleeping(seconds):
        sleep(seconds)
        if len(clock.sleeps) == after_sleeps:
            action()

    return sleeping


def holder_stores(store, segmind):
    """The lease holder's generation, landing in the cache (it holds its lease in another invocation)."""
    return lambda: generate(GenerationService(store, segmind), owner="holder")


def charged(ledger, tenant):
    usage = ledger.usage(tenant.tenant_id)
    return {
        "requests": usage.requests,
        "hits": usage.cache_hits,
        "images": usage.images_generated,
        "failed": usage.failed_generations,
        "spent": round(usage.credits_spent, 6),
        "held": round(usage.credits_committed - usage.credits_spent, 6),
    }


# -- hit and miss ----------------------------------------------------------------------------------------------------
def test_a_miss_is_generated_once_and_cached_and_the_next_identical_request_is_a_free_hit(
    service, segmind, store, ledger, acme
):
    first = generate(service, billing=billing(ledger, acme))
    assert first.cache is CacheStatus.MISS and len(segmind.calls) == 1 and first.seed == 42
    assert first.stored is not None and first.stored.in_cache and store.read(first.stored)[0] == first.images
    assert segmind.calls[0]["prompt"] == "a red fox" and segmind.calls[0]["seed"] == 42
    second = generate(service, billing=billing(ledger, acme))
    assert second.cache is CacheStatus.HIT and second.images == first.images and len(segmind.calls) == 1
    assert charged(ledger, acme) == {"requests": 2, "hits": 1, "images": 1, "failed": 0, "spent": ESTIMATE, "held": 0}


def test_a_hit_by_url_reads_no_image_bytes(service, segmind):
    generate(service)
    hit = generate(service, by_url=True)
    assert hit.cache is CacheStatus.HIT and hit.images is None and hit.stored.count == 1
    assert len(segmind.calls) == 1


def test_other_namespaces_and_other_requests_miss(service, segmind):
    generate(service)
    assert generate(service, namespace="other").cache is CacheStatus.MISS
    assert generate(service, REQUEST.model_copy(update={"steps": 5})).cache is CacheStatus.MISS
    assert len(segmind.calls) == 3


def test_no_cache_regenerates_and_no_store_writes_nothing(service, segmind, store):
    generate(service)
    bypass = generate(service, policy=CachePolicy(read=False))
    assert bypass.cache is CacheStatus.BYPASS and len(segmind.calls) == 2
    unstored = generate(service, REQUEST.model_copy(update={"prompt": "not kept"}), policy=CachePolicy(write=False))
    assert unstored.cache is CacheStatus.MISS and unstored.stored is None and store.writes == 2


def test_a_random_seed_is_generated_every_time_and_cached_under_the_seed_drawn(service, segmind):
    random = REQUEST.model_copy(update={"seed": -1})
    first, second = generate(service, random), generate(service, random)
    assert (first.cache, second.cache) == (CacheStatus.BYPASS, CacheStatus.BYPASS) and len(segmind.calls) == 2
    drawn = REQUEST.model_copy(update={"seed": first.seed})
    assert generate(service, drawn).cache is CacheStatus.HIT  # the seed it reports brings the same images back


def test_a_short_batch_is_charged_for_what_came_and_never_cached(service, segmind, ledger, acme):
    segmind.images = 1  # Segmind returned one image of the two asked
    batch = validated(default_model(), {**REQUEST.model_dump(), "batch_size": 2})
    result = generate(service, batch, billing=billing(ledger, acme, 0.02, 2))
    assert result.count == 1 and result.asked == 2 and result.stored is None
    assert charged(ledger, acme) == {"requests": 1, "hits": 0, "images": 1, "failed": 0, "spent": 0.01, "held": 0}
    assert generate(service, batch).cache is CacheStatus.MISS


# -- only-if-cached --------------------------------------------------------------------------------------------------
def test_only_if_cached_refuses_a_miss_before_any_cost(service, segmind, ledger, acme, leases):
    with pytest.raises(NotCached):
        generate(service, policy=CachePolicy(only_cached=True), billing=billing(ledger, acme))
    assert segmind.calls == [] and not leases.held(LEASE)
    assert charged(ledger, acme)["requests"] == 0


def test_only_if_cached_serves_a_hit(service, segmind):
    generate(service)
    assert generate(service, policy=CachePolicy(only_cached=True)).cache is CacheStatus.HIT
    assert len(segmind.calls) == 1


# -- coalescing ------------------------------------------------------------------------------------------------------
def test_an_identical_request_waits_for_the_lease_holders_images_and_is_a_free_hit(
    service, segmind, store, leases, clock, ledger, acme
):
    assert leases.acquire(LEASE, "holder", 30)  # another invocation is generating these images
    service.coalescer._sleep = during_the_wait(clock, 3, holder_stores(store, segmind))
    result = generate(service, billing=billing(ledger, acme), owner="waiter")
    assert result.coalesced and result.cache is CacheStatus.HIT and len(segmind.calls) == 1
    assert len(clock.sleeps) == 3  # it found them on its first look after they landed
    # It reserved while it took the lease, then gave the reservation back: a shared generation is free.
    assert charged(ledger, acme) | {"requests": None} == {
        "requests": None,  # see the next test
        "hits": 1,
        "images": 0,
        "failed": 0,
        "spent": 0,
        "held": 0,
    }


def test_a_coalesced_waiter_counts_as_one_request_and_one_hit(service, segmind, store, leases, clock, ledger, acme):
    assert leases.acquire(LEASE, "holder", 30)
    service.coalescer._sleep = during_the_wait(clock, 1, holder_stores(store, segmind))
    assert generate(service, billing=billing(ledger, acme), owner="waiter").coalesced
    assert charged(ledger, acme) == {"requests": 1, "hits": 1, "images": 0, "failed": 0, "spent": 0, "held": 0}


def test_when_the_lease_holder_is_gone_without_images_the_waiter_takes_over(
    service, segmind, leases, clock, ledger, acme
):
    assert leases.acquire(LEASE, "holder", 30)
    service.coalescer._sleep = during_the_wait(
        clock, 2, lambda: leases.release(LEASE, "holder")
    )  # its generation failed
    result = generate(service, billing=billing(ledger, acme), owner="waiter")
    assert result.cache is CacheStatus.MISS and not result.coalesced and len(segmind.calls) == 1
    assert len(clock.sleeps) == 2  # taken over as soon as the lease was free, not at its expiry
    assert charged(ledger, acme) == {"requests": 1, "hits": 0, "images": 1, "failed": 0, "spent": ESTIMATE, "held": 0}


def test_a_crashed_lease_holder_is_taken_over_once_its_lease_expires(service, segmind, leases, clock):
    assert leases.acquire(LEASE, "crashed", 5)
    result = generate(service, owner="waiter")
    assert result.cache is CacheStatus.MISS and len(segmind.calls) == 1
    assert 5 <= sum(clock.sleeps) < 7


def test_a_waiter_refused_by_its_budget_is_refused_when_it_has_to_take_over(
    service, segmind, leases, clock, tenants, ledger
):
    broke = make_tenant(tenants, "broke", "key-broke", budget_credits=0.001)
    assert leases.acquire(LEASE, "holder", 30)
    service.coalescer._sleep = during_the_wait(clock, 1, lambda: leases.release(LEASE, "holder"))
    with pytest.raises(BudgetExceeded):
        generate(service, billing=billing(ledger, broke), owner="waiter")
    assert segmind.calls == [] and not leases.held(LEASE)


def test_a_waiter_past_its_deadline_is_a_504_that_gives_its_reservation_back(service, segmind, leases, ledger, acme):
    assert leases.acquire(LEASE, "holder", 300)
    with pytest.raises(CoalesceTimeout):
        generate(service, billing=billing(ledger, acme), owner="waiter")
    assert segmind.calls == []
    assert charged(ledger, acme) == {"requests": 1, "hits": 0, "images": 0, "failed": 0, "spent": 0, "held": 0}


def test_leases_unavailable_mean_generating_without_coalescing(service, segmind, leases):
    leases.unreachable("acquire", "release")
    assert generate(service).cache is CacheStatus.MISS and len(segmind.calls) == 1


# -- billing around the upstream call --------------------------------------------------------------------------------
def test_an_upstream_failure_releases_the_reservation_as_a_failed_generation_and_frees_the_lease(
    service, segmind, store, leases, ledger, acme
):
    segmind.fail_next(UpstreamFailure(FailureKind.SERVER_ERROR, "Segmind failed (HTTP 500)"))
    with pytest.raises(UpstreamFailure):
        generate(service, billing=billing(ledger, acme))
    assert charged(ledger, acme) == {"requests": 1, "hits": 0, "images": 0, "failed": 1, "spent": 0, "held": 0}
    assert not leases.held(LEASE) and store.keys() == []
    assert generate(service).cache is CacheStatus.MISS  # an identical request tries again at once


def test_an_answer_carrying_the_images_goes_before_its_settlement_and_cache_copy(
    service, segmind, store, leases, deferrer, ledger, acme
):
    bill = billing(ledger, acme)
    result = generate(service, billing=bill, store_later=lambda result: True)
    assert result.images and result.stored is None and result.storing is not None
    assert store.keys() == [] and charged(ledger, acme)["spent"] == 0
    assert bill.remaining()["credits"] == pytest.approx(1.0 - ESTIMATE)  # the answer's figures already count it
    assert leases.held(LEASE)  # identical requests wait for the copy rather than generate
    deferrer.run()  # the answer has gone
    assert store.read(result.storing)[0] == result.images
    assert charged(ledger, acme) == {"requests": 1, "hits": 0, "images": 1, "failed": 0, "spent": ESTIMATE, "held": 0}


def test_images_that_reach_the_client_nowhere_are_refunded(service, store, ledger, acme):
    """What the API does when an answer can neither carry the images nor point at stored ones."""
    store.unreachable("write")
    bill = billing(ledger, acme)
    result = generate(service, billing=bill, must_store=True)
    assert result.images and result.stored is None
    assert charged(ledger, acme)["spent"] == ESTIMATE
    bill.refund()
    bill.refund()  # once only
    assert charged(ledger, acme) == {"requests": 1, "hits": 0, "images": 0, "failed": 1, "spent": 0, "held": 0}


def test_a_ledger_down_before_the_call_refuses_without_calling_upstream(service, segmind, leases, ledger, acme):
    ledger.unreachable("reserve")
    with pytest.raises(Unavailable) as refused:
        generate(service, billing=billing(ledger, acme))
    assert refused.value.dependency is Dependency.LEDGER and segmind.calls == []
    assert not leases.held(LEASE)


def test_a_ledger_down_after_the_call_still_delivers_the_image(service, segmind, ledger, acme):
    bill = billing(ledger, acme)
    ledger.unreachable("settle")
    result = generate(service, billing=bill)
    assert result.images and result.cache is CacheStatus.MISS
    ledger.recover()
    assert charged(ledger, acme)["held"] == ESTIMATE  # over-, never under-counted; the sweeper resolves it later


# -- storage failures ------------------------------------------------------------------------------------------------
def test_a_storage_failure_keeps_the_paid_image_and_frees_the_lease(service, segmind, store, leases, ledger, acme):
    store.unreachable("write")
    result = generate(service, billing=billing(ledger, acme))
    assert result.images and result.cache is CacheStatus.MISS and result.stored is None
    assert charged(ledger, acme)["spent"] == ESTIMATE  # the client has its image: it is charged
    assert not leases.held(LEASE)  # nothing cached: identical requests must not wait for it
    store.recover()
    assert generate(service).cache is CacheStatus.MISS and len(segmind.calls) == 2


def test_a_cache_that_cannot_be_read_is_generated_around(service, segmind, store, clock):
    generate(service)
    clock.advance(30)  # the first request's lease has lapsed
    store.unreachable("read")
    result = generate(service)
    assert result.cache is CacheStatus.MISS and result.images and len(segmind.calls) == 2


def test_a_cache_that_cannot_be_read_is_generated_around_while_the_last_miss_lease_lapses(
    service, segmind, store, clock
):
    generate(service)  # cached: its lease is left to lapse
    store.unreachable("read")
    started = clock()
    result = generate(service)
    assert result.cache is CacheStatus.MISS and result.images and len(segmind.calls) == 2
    assert clock() - started < 1  # it did not wait for the lease to lapse
