"""Identical concurrent requests make one upstream call; a crashed owner's lease expires; images cached after the
answer keep identical requests waiting for them."""

import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest

from segmind_proxy.domain.cache_key import cache_key
from segmind_proxy.domain.cache_policy import CachePolicy, CacheStatus
from segmind_proxy.domain.errors import CoalesceTimeout, FailureKind, UpstreamFailure
from segmind_proxy.domain.request import default_model, validated
from segmind_proxy.domain.usage import BudgetExceeded
from segmind_proxy.flows.billing import TenantBilling
from segmind_proxy.flows.coalescing import Coalescer
from segmind_proxy.flows.generate import GenerationService
from tests.fakes import FakeDeferrer, FakeImageStore, FakeLeases, FakeUpstream
from tests.support.aws import make_tenant
from tests.support.flows import generate as generate_as_a_front_door

REQUEST = validated(default_model(), {"prompt": "coalesce me", "width": 128, "height": 128})
KEY = cache_key(REQUEST)


@pytest.fixture
def on_the_clock(store, segmind, leases, clock):
    """A service whose waits take no time: the fakes and the service share the fake clock."""
    return GenerationService(store, segmind, leases, clock=clock, sleep=clock.sleep)


def in_real_time(upstream, later=None, store=None):
    """A service that threads really wait on (leases on the wall clock)."""
    return GenerationService(store or FakeImageStore(), upstream, FakeLeases(), later=later)


def generate(service, request=REQUEST, **options):
    return generate_as_a_front_door(service, request, **options)


def test_twenty_identical_concurrent_requests_make_one_upstream_call():
    upstream = FakeUpstream(seconds=0.5)
    service = in_real_time(upstream)
    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(lambda i: generate(service, owner=f"r{i}"), range(20)))
    assert len(upstream.calls) == 1
    assert len({r.images[0] for r in results}) == 1
    assert sorted(r.cache.value for r in results).count("MISS") == 1
    assert sum(r.coalesced for r in results) >= 5  # many waited on the lease (the rest arrived after: plain hits)


def test_other_tenants_and_other_requests_do_not_coalesce():
    upstream = FakeUpstream(seconds=0.3)
    service = in_real_time(upstream)
    other = validated(default_model(), {"prompt": "something else", "width": 128, "height": 128})
    jobs = [("tenant-a", REQUEST), ("tenant-b", REQUEST), ("tenant-a", other)]
    with ThreadPoolExecutor(max_workers=3) as pool:
        list(pool.map(lambda job: generate(service, job[1], namespace=job[0], by_url=True, owner=job[0]), jobs))
    assert len(upstream.calls) == 3


def test_a_crashed_owners_lease_expires_and_the_request_takes_over(on_the_clock, segmind, leases, clock):
    assert leases.acquire(f"t#{KEY}", "dead-owner", 1.5)  # never released
    result = generate(on_the_clock, owner="me")
    assert result.cache is CacheStatus.MISS and len(segmind.calls) == 1
    assert 1.5 <= sum(clock.sleeps) < 15  # waited for the expiry, then took over


def test_a_redelivered_job_takes_its_dead_attempts_lease_at_once(on_the_clock, segmind, leases, clock):
    key = f"t#{KEY}"
    assert leases.acquire(key, "job-42", 30)  # the killed attempt's, never released
    assert not leases.acquire(key, "job-7", 30)  # still held against anyone else
    result = generate(on_the_clock, by_url=True, owner="job-42")
    assert result.cache is CacheStatus.MISS and len(segmind.calls) == 1
    assert clock.sleeps == []  # it did not wait for the old lease to lapse


def test_uncached_url_answers_without_an_upstream_request_id_never_share_objects(on_the_clock, segmind, store):
    segmind.request_ids = False
    first, second = (
        generate(
            on_the_clock,
            REQUEST.model_copy(update={"prompt": prompt}),
            policy=CachePolicy(write=False),
            by_url=True,
            must_store=True,
        )
        for prompt in ("first", "second")
    )
    assert first.stored.prefix.startswith("tmp/t/") and second.stored.prefix.startswith("tmp/t/")
    assert first.stored.prefix != second.stored.prefix
    assert store.read(first.stored)[0] == first.images != second.images == store.read(second.stored)[0]


def test_random_seeds_and_no_store_never_wait(on_the_clock, segmind, leases, clock):
    leases.acquire(f"t#{KEY}", "someone", 30)
    generate(on_the_clock, policy=CachePolicy(write=False))
    random = validated(default_model(), {"prompt": "coalesce me", "width": 128, "height": 128, "seed": -1})
    generate(on_the_clock, random)
    assert len(segmind.calls) == 2 and clock.sleeps == []


def test_a_waiter_refused_by_its_budget_still_shares_the_images_for_free(ledger, tenants):
    upstream = FakeUpstream(seconds=0.5)
    service = in_real_time(upstream)
    owner, waiter = (
        make_tenant(tenants, "owner", "key-owner"),
        make_tenant(tenants, "waiter", "key-w", budget_credits=0),
    )

    def run(tenant, name):
        return generate(service, billing=TenantBilling(ledger, tenant, 0.01, 1), owner=name)

    with ThreadPoolExecutor(max_workers=2) as pool:
        first = pool.submit(run, owner, "owner")
        until = time.monotonic() + 10
        while not upstream.calls and time.monotonic() < until:  # the owner holds the lease once it calls
            time.sleep(0.01)
        shared = pool.submit(run, waiter, "waiter").result()
    assert first.result().cache is CacheStatus.MISS and shared.coalesced and len(upstream.calls) == 1
    paid = ledger.usage(owner.tenant_id)
    assert (paid.images_generated, paid.cache_hits) == (1, 0) and paid.credits_spent == pytest.approx(0.01)
    free = ledger.usage(waiter.tenant_id)  # refused, but a shared generation costs nothing
    assert (free.requests, free.cache_hits, free.rejected_requests, free.credits_committed) == (1, 1, 0, 0)


def test_refused_with_nobody_generating_is_refused_and_frees_the_lease(on_the_clock, segmind, leases, ledger, tenants):
    broke = make_tenant(tenants, budget_credits=0)
    with pytest.raises(BudgetExceeded):
        generate(on_the_clock, billing=TenantBilling(ledger, broke, 0.01, 1))
    assert segmind.calls == []
    assert not leases.held(f"t#{KEY}")


def test_a_request_that_times_out_waiting_for_an_identical_one_gives_its_reservation_back(
    on_the_clock, segmind, leases, ledger, tenants
):
    assert leases.acquire(f"t#{KEY}", "slow-owner", 30)
    acme = make_tenant(tenants, budget_credits=1.0)
    with pytest.raises(CoalesceTimeout):
        generate(on_the_clock, seconds=0.5, billing=TenantBilling(ledger, acme, 0.01, 1), owner="me")
    assert segmind.calls == []
    usage = ledger.usage(acme.tenant_id)
    assert (usage.requests, usage.credits_committed, usage.failed_generations) == (1, 0, 0)


def test_a_stored_generation_lets_its_lease_lapse_and_a_failed_one_frees_it_at_once(on_the_clock, segmind, leases):
    generate(on_the_clock)
    # No DeleteItem on the miss: the images are in the cache, so an identical request is a hit, never a waiter.
    assert leases.held(f"t#{KEY}")
    assert generate(on_the_clock).cache is CacheStatus.HIT and len(segmind.calls) == 1
    other = validated(default_model(), {"prompt": "fails", "width": 128, "height": 128})
    segmind.fail_next(UpstreamFailure(FailureKind.SERVER_ERROR, "upstream down"))
    with pytest.raises(UpstreamFailure):
        generate(on_the_clock, other)
    assert not leases.held(f"t#{cache_key(other)}")


def test_an_inline_answer_goes_before_its_images_are_cached_and_identical_requests_wait_for_them():
    upstream, later = FakeUpstream(), FakeDeferrer()
    service = in_real_time(upstream, later)
    first = generate(service, owner="r1", store_later=lambda result: True)
    assert first.cache is CacheStatus.MISS and first.images and first.stored is None
    assert service._read_cache(REQUEST, "t", by_url=False) is None  # not written yet
    assert service.coalescer.leases.held(f"t#{KEY}")  # so an identical request waits, not generates
    with ThreadPoolExecutor(1) as pool:
        second = pool.submit(generate, service, owner="r2")
        time.sleep(0.4)
        assert not second.done() and len(upstream.calls) == 1
        later.run()  # the write, after the answer
        assert second.result(timeout=10).images == first.images
    assert len(upstream.calls) == 1


def test_a_failed_write_after_the_answer_frees_the_lease_at_once(store, segmind, leases, clock, deferrer):
    service = GenerationService(store, segmind, leases, clock=clock, sleep=clock.sleep, later=deferrer)
    store.unreachable("write")
    result = generate(service, store_later=lambda result: True)
    assert result.images and leases.held(f"t#{KEY}")
    deferrer.run()
    assert not leases.held(f"t#{KEY}")


@pytest.mark.parametrize("must_store, fits", [(True, True), (False, False)], ids=["replay", "too-big"])
def test_stored_before_answering(store, segmind, leases, clock, deferrer, must_store, fits):
    """Images a replay needs, or that the answer cannot carry (URLs instead), are stored before answering."""
    service = GenerationService(store, segmind, leases, clock=clock, sleep=clock.sleep, later=deferrer)
    result = generate(service, must_store=must_store, store_later=lambda result: fits)
    assert deferrer.tasks == [] and result.storing is None
    assert result.stored is not None and service._read_cache(REQUEST, "t", by_url=False) is not None


@pytest.mark.parametrize("lands_after", [0.5, 2.0, 4.7, 9.3])
def test_a_waiter_is_served_within_a_quarter_second_of_the_images_landing(clock, leases, lands_after):
    """Segmind takes 2 to 5 s: a waiter polling ever more slowly would answer up to its longest pause after the
    request it waits for (about 0.65 s more than that request at p50 with a 1 s pause, in `make bench-peers`)."""

    leases.acquire(KEY, "holder", 60)
    landed = clock() + lands_after
    images = SimpleNamespace(coalesced=False)
    found = Coalescer(leases, clock=clock, sleep=clock.sleep).wait_for(
        KEY, clock() + 30, lambda: images if clock() >= landed else None
    )
    assert found is images
    assert 0 <= clock() - landed <= 0.25
