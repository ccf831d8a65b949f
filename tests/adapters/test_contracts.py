"""The fakes in tests/fakes and the adapters they stand in for agree: each check runs on both, the adapter under
moto. What the flow tests learn on a fake then holds over AWS."""

from __future__ import annotations

import boto3
import pytest

from segmind_proxy.domain.errors import Outage
from segmind_proxy.domain.images import StoredSet
from segmind_proxy.domain.jobs import Job, JobStatus
from segmind_proxy.domain.tenants import Tenant
from segmind_proxy.domain.usage import BudgetExceeded, Counted, Hold
from tests.fakes import FakeClock, FakeImageStore, FakeJobStore, FakeLeases, FakeLedger, FakeTenants
from tests.support.aws import BUCKET, JOBS_TABLE, create_table
from tests.support.budgets import reserve_at_once

BOTH = ["fake", "adapter"]


def tenant(name: str = "acme", **budgets) -> Tenant:
    return Tenant(tenant_id=f"t_{name}", name=name, plan="pro", api_key_id=f"key-{name}", **budgets)


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture(params=BOTH)
def ledger(request):
    return FakeLedger() if request.param == "fake" else request.getfixturevalue("meter")


@pytest.fixture
def jobs_table(ddb):
    create_table(boto3.resource("dynamodb"), "JobsTable", JOBS_TABLE)
    return ddb


@pytest.fixture(params=BOTH)
def jobs(request, clock):
    if request.param == "fake":
        return FakeJobStore(clock)
    from segmind_proxy.adapters.dynamo_jobs import JobStore

    resource = request.getfixturevalue("jobs_table")
    return JobStore(JOBS_TABLE, lambda: resource, clock=clock)


@pytest.fixture(params=BOTH)
def leases(request, clock):
    if request.param == "fake":
        return FakeLeases(clock)
    from segmind_proxy.adapters.dynamo_leases import LeaseStore

    resource = request.getfixturevalue("jobs_table")
    return LeaseStore(JOBS_TABLE, lambda: resource, clock=clock)


@pytest.fixture(params=BOTH)
def images(request):
    if request.param == "fake":
        return FakeImageStore()
    from segmind_proxy.adapters.s3_images import ImageStore

    s3 = request.getfixturevalue("aws")["s3"]
    return ImageStore(BUCKET, lambda: s3)


@pytest.fixture(params=BOTH)
def directory(request):
    return FakeTenants() if request.param == "fake" else request.getfixturevalue("registry")


# -- the usage ledger ----------------------------------------------------------------------------------------------------
def test_a_reservation_settles_for_what_was_generated(ledger):
    acme = tenant(budget_credits=1.0, budget_images=10)
    reservation, usage = ledger.reserve(acme, 0.04, 4)
    assert usage.credits_committed == pytest.approx(0.04) and usage.images_committed == 4
    usage = ledger.settle(reservation, 0.03, 3)
    assert (usage.requests, usage.images_generated, usage.upstream_calls) == (1, 3, 1)
    assert usage.credits_spent == pytest.approx(0.03) and usage.credits_committed == pytest.approx(0.03)
    assert usage.remaining(acme) == {"credits": pytest.approx(0.97), "images": 7}


def test_a_charge_adds_to_its_models_figures_and_a_refund_takes_them_back(ledger):
    acme = tenant()
    flux, _ = ledger.reserve(acme, 0.04, 2, model="flux-dev")
    assert [held.model for held in ledger.open_reservations(acme.tenant_id, flux.month)[0]] == ["flux-dev"]
    ledger.settle(flux, 0.04, 2)
    vega, _ = ledger.reserve(acme, 0.002, 1, model="segmind-vega-rt-v1")
    usage = ledger.settle(vega, 0.002, 1)
    assert usage.figures(acme)["by_model"] == {
        "flux-dev": {"images_generated": 2, "credits_spent": pytest.approx(0.04)},
        "segmind-vega-rt-v1": {"images_generated": 1, "credits_spent": pytest.approx(0.002)},
    }
    usage = ledger.refund(vega, 0.002, 1)
    assert set(usage.figures(acme)["by_model"]) == {"flux-dev"}  # nothing left of the refunded one
    assert ledger.open_reservations(acme.tenant_id, flux.month)[0] == {}


def test_a_reservation_is_resolved_once(ledger):
    acme = tenant(budget_credits=1.0)
    released, _ = ledger.reserve(acme, 0.5, 1, Hold("req-1", 2_000_000_000))
    usage = ledger.release(released)
    assert (usage.credits_committed, usage.credits_spent, usage.failed_generations) == (0, 0, 1)
    assert ledger.settle(released, 0.5, 1) is None and ledger.release(released) is None
    settled, _ = ledger.reserve(acme, 0.5, 1, Hold("req-2", 2_000_000_000))
    ledger.settle(settled, 0.5, 1)
    assert ledger.release(settled) is None and ledger.settle(settled, 0.5, 1) is None
    usage = ledger.usage(acme.tenant_id)
    assert (usage.requests, usage.upstream_calls, usage.failed_generations) == (2, 1, 1)
    assert usage.credits_spent == pytest.approx(0.5) == usage.credits_committed


def test_a_refund_undoes_a_settlement_and_counts_a_failure(ledger):
    acme = tenant(budget_credits=1.0)
    reservation, _ = ledger.reserve(acme, 0.2, 2)
    ledger.settle(reservation, 0.2, 2)
    usage = ledger.refund(reservation, 0.2, 2)
    assert (usage.credits_spent, usage.credits_committed, usage.images_generated, usage.failed_generations) == (
        0,
        0,
        0,
        1,
    )


@pytest.mark.parametrize(
    ("budget", "cost", "field"),
    [({"budget_credits": 0.05}, (0.06, 1), "credits"), ({"budget_images": 3}, (0.01, 4), "images")],
)
def test_a_request_larger_than_the_budget_is_refused_untouched(ledger, budget, cost, field):
    acme = tenant(**budget)
    with pytest.raises(BudgetExceeded) as refused:
        ledger.reserve(acme, *cost)
    assert field in refused.value.message
    assert ledger.usage(acme.tenant_id).requests == 0


@pytest.mark.parametrize(
    ("budget", "field"), [({"budget_credits": 0.025}, "credits"), ({"budget_images": 2}, "images")]
)
def test_reservations_stop_at_the_budget_and_name_it(ledger, budget, field):
    acme = tenant(**budget)
    held = [ledger.reserve(acme, 0.01, 1)[0] for _ in range(2)]
    with pytest.raises(BudgetExceeded, match=field):
        ledger.reserve(acme, 0.01, 1)
    ledger.release(held[0])  # room again
    ledger.reserve(acme, 0.01, 1)
    assert ledger.usage(acme.tenant_id).requests == 3


def test_a_reservation_given_back_for_a_hit_counts_one_request_and_one_hit(ledger):
    acme = tenant(budget_credits=1.0)
    reservation, _ = ledger.reserve(acme, 0.5, 1, Hold("req-1", 2_000_000_000))
    usage = ledger.release(reservation, failed=False, hit=True)
    assert (usage.requests, usage.cache_hits, usage.failed_generations, usage.credits_committed) == (1, 1, 0, 0)
    assert ledger.release(reservation, failed=False, hit=True) is None  # once


def test_hits_and_refusals_are_counted_never_charged(ledger):
    acme = tenant(budget_credits=0.0)
    assert (ledger.record_hit(acme).cache_hits, ledger.usage(acme.tenant_id).credits_committed) == (1, 0)
    ledger.record(acme, Counted.REJECTED)
    ledger.record(acme, Counted.REFUSED)
    ledger.record(acme, Counted.UNSCREENED)
    usage = ledger.usage(acme.tenant_id)
    assert (usage.requests, usage.rejected_requests, usage.refused_prompts, usage.credits_spent) == (3, 2, 1, 0)
    assert usage.unscreened_requests == 1


def test_open_reservations_are_due_at_their_earliest_hold_until_rescheduled(ledger):
    acme = tenant(budget_credits=1.0)
    first, _ = ledger.reserve(acme, 0.1, 1, Hold("req-a", 1000))
    second, _ = ledger.reserve(acme, 0.2, 1, Hold("req-b", 2000))
    assert ledger.due(999) == [] and ledger.due(1000) == [(acme.tenant_id, first.month)]
    assert ledger.open_reservations(acme.tenant_id, first.month) == ({first: 1000, second: 2000}, 2, 1000)
    assert ledger.extend(second, 3000) and ledger.open_reservations(acme.tenant_id, first.month)[0][second] == 3000
    ledger.release(first)
    assert not ledger.extend(first, 3000)  # resolved: nothing to hold longer
    assert not ledger.reschedule(acme.tenant_id, first.month, seen_open=2, next_due=3000)  # one was resolved since
    assert ledger.reschedule(acme.tenant_id, first.month, seen_open=1, next_due=3000)
    assert ledger.due(2999) == [] and ledger.due(3000) == [(acme.tenant_id, first.month)]
    ledger.settle(second, 0.2, 1)
    assert ledger.reschedule(acme.tenant_id, first.month, seen_open=0, next_due=None)
    assert ledger.due(10**10) == []


def test_the_fake_ledger_never_overruns_a_budget_under_concurrent_reservations():
    """As DynamoDB's conditional update (tests/adapters/test_metering.py checks it on moto's server)."""
    ledger, acme = FakeLedger(), tenant(budget_credits=0.075)
    assert reserve_at_once(ledger, acme).count(True) == 7
    assert ledger.usage(acme.tenant_id).credits_spent == pytest.approx(0.07)


# -- jobs ------------------------------------------------------------------------------------------------------------
def new_job(jobs) -> Job:
    return jobs.create(Job(job_id=Job.new_id(), namespace="t", request={"prompt": "p"}, estimate=0.004))


def test_a_job_is_created_once(jobs):
    job = new_job(jobs)
    with pytest.raises(Outage):  # a conditional write the store does not answer itself
        jobs.create(job)
    assert jobs.get(job.job_id).status is JobStatus.QUEUED and jobs.get("no-such-job") is None


def test_a_jobs_request_and_model_come_back_exactly_as_validated(jobs):
    """Whatever a model's fields hold: a float DynamoDB's numbers cannot (2.5e-294), 3.0 apart from 3, text."""
    request = {"prompt": "p\u00af", "guidance": 2.5727447379428597e-294, "seed": 7, "denoise": 3.0, "refiner": True}
    job = jobs.create(Job(job_id=Job.new_id(), namespace="t", request=request, model="flux-dev", estimate=0.02))
    stored = jobs.get(job.job_id)
    assert (stored.request, stored.model) == (request, "flux-dev")
    assert type(stored.request["denoise"]) is float


def test_a_job_is_started_by_one_worker_and_completed_once(jobs):
    job = new_job(jobs)
    started = jobs.start(job, lease_seconds=10)
    assert started.status is JobStatus.PROCESSING and started.attempts == 1
    assert jobs.start(job, lease_seconds=10) is None  # another delivery, while the first worker holds it
    done = jobs.complete(job.job_id, {"prefix": "cache/t/k"}, started.attempts)
    assert done.status is JobStatus.COMPLETED and done.result == {"prefix": "cache/t/k"}
    assert jobs.complete(job.job_id, {"prefix": "again"}, started.attempts) is None
    assert jobs.fail(job.job_id, "too late") is None and jobs.start(done, lease_seconds=10) is None
    assert jobs.get(job.job_id).result == {"prefix": "cache/t/k"}


def test_an_attempt_taken_over_can_no_longer_complete_or_requeue_the_job(jobs, clock):
    job = new_job(jobs)
    first = jobs.start(job, lease_seconds=10)
    clock.advance(11)  # the first attempt's lease runs out: it is presumed dead
    second = jobs.start(first, lease_seconds=10)
    assert (first.attempts, second.attempts) == (1, 2)
    assert jobs.complete(job.job_id, {"prefix": "stale"}, first.attempts) is None
    assert jobs.requeue(job.job_id, first.attempts) is None
    done = jobs.complete(job.job_id, {"prefix": "cache/t/k"}, second.attempts)
    assert done is not None and done.status is JobStatus.COMPLETED and done.result == {"prefix": "cache/t/k"}


def test_a_requeued_job_is_started_again_and_a_failed_one_never(jobs):
    job = new_job(jobs)
    started = jobs.start(job, lease_seconds=10)
    requeued = jobs.requeue(job.job_id, started.attempts)
    assert requeued.status is JobStatus.QUEUED and requeued.processing_until == 0
    again = jobs.start(requeued, lease_seconds=10)
    assert again.attempts == 2
    failed = jobs.fail(job.job_id, "gave up")
    assert failed.status is JobStatus.FAILED and failed.error == "gave up"
    assert jobs.fail(job.job_id, "twice") is None and jobs.start(failed, lease_seconds=10) is None


def test_a_jobs_reservation_and_webhook_outcome_are_kept(jobs):
    job = new_job(jobs)
    jobs.hold(job.job_id, {"tenant_id": "t", "month": "2026-01", "credits": 0.5, "images": 1, "holder": "job-x"})
    jobs.record_webhook(job.job_id, {"delivered": True, "attempts": 1})
    kept = jobs.get(job.job_id)
    assert kept.reservation["credits"] == 0.5 and kept.webhook == {"delivered": True, "attempts": 1}
    jobs.hold(job.job_id, None)
    assert jobs.get(job.job_id).reservation is None


def test_holding_a_reservation_for_a_job_that_is_gone_leaves_no_trace(jobs):
    jobs.hold("no-such-job", {"tenant_id": "t", "month": "2026-01", "credits": 0.5, "images": 1, "holder": "job-x"})
    jobs.hold("no-such-job", None)
    assert jobs.get("no-such-job") is None


# -- leases ----------------------------------------------------------------------------------------------------------
def test_a_lease_has_one_owner_until_it_expires(leases, clock):
    assert leases.acquire("k", "a", 10) and leases.held("k")
    assert not leases.acquire("k", "b", 10)
    assert leases.acquire("k", "a", 10)  # an owner may take its own lease again
    clock.advance(10.5)
    assert not leases.held("k") and leases.acquire("k", "b", 10)


def test_only_its_owner_releases_a_lease(leases):
    assert leases.acquire("k", "a", 10)
    leases.release("k", "b")
    assert leases.held("k")
    leases.release("k", "a")
    assert not leases.held("k") and leases.acquire("k", "b", 10)


# -- images ----------------------------------------------------------------------------------------------------------
def test_a_written_set_is_read_back_with_its_metadata(images):
    stored = StoredSet.cached("t", "k" * 64, 2, "png")
    assert images.read(stored) is None and images.head(stored) is None
    images.write(stored, [b"one", b"two"], "image/png", {"count": "2", "seed": "7"})
    assert images.read(stored) == ([b"one", b"two"], {"count": "2", "seed": "7"})
    assert images.head(stored) == {"count": "2", "seed": "7"}
    assert len(images.presign(stored, 60)) == 2


def test_a_short_batch_is_read_as_the_count_it_records(images):
    written = StoredSet.cached("t", "s" * 64, 1, "png")
    images.write(written, [b"only"], "image/png", {"count": "1"})
    assert images.read(StoredSet.cached("t", "s" * 64, 4, "png")) == ([b"only"], {"count": "1"})


# -- tenants ---------------------------------------------------------------------------------------------------------
def test_a_tenant_is_found_by_its_current_key_only(directory):
    acme = directory.create(tenant())
    assert directory.known_owner("key-acme") is None  # not looked up yet in this container
    assert directory.by_api_key("key-acme").tenant_id == acme.tenant_id == directory.get(acme.tenant_id).tenant_id
    assert directory.known_owner("key-acme") == acme.tenant_id
    assert directory.by_api_key("key-unknown") is None and directory.get("t_nobody") is None
