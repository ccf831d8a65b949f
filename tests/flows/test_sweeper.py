"""Reservations whose holders died are given back by the sweeper, exactly once, and the month's figures stay exact."""

import time

import pytest

from segmind_proxy.domain.jobs import Job, JobStatus
from segmind_proxy.domain.usage import JOB_HOLD_SECONDS, Hold
from segmind_proxy.flows.billing import TenantBilling
from segmind_proxy.flows.sweeper import ReservationSweeper
from tests.support.aws import make_tenant

NOW = time.time()


def sweep(ledger, at, jobs=None):
    return ReservationSweeper(ledger, jobs, clock=lambda: at).sweep()


def test_a_reservation_whose_request_died_is_given_back_as_a_failed_generation(tenants, ledger):
    tenant = make_tenant(tenants, budget_credits=1.0, budget_images=10)
    ledger.reserve(tenant, 0.5, 2, Hold("req-dead", int(NOW) + 70))  # its process vanished: nothing settles it
    assert sweep(ledger, at=NOW + 69).released == 0  # still its request's: Lambda may not have ended it yet
    report = sweep(ledger, at=NOW + 71)
    assert (report.items, report.released) == (1, 1)
    usage = ledger.usage(tenant.tenant_id)
    assert (usage.requests, usage.failed_generations, usage.images_generated) == (1, 1, 0)
    assert usage.credits_committed == 0 and usage.images_committed == 0 and usage.credits_spent == 0
    assert ledger.due(NOW + 10_000) == []  # nothing left open: out of the index until the next reservation


def test_only_the_dead_ones_are_taken_and_the_item_is_due_again_for_the_rest(tenants, ledger):
    tenant = make_tenant(tenants, budget_credits=1.0)
    ledger.reserve(tenant, 0.1, 1, Hold("req-dead", int(NOW) + 10))
    live, _ = ledger.reserve(tenant, 0.2, 1, Hold("req-live", int(NOW) + 100))
    assert sweep(ledger, at=NOW + 20).released == 1
    assert ledger.usage(tenant.tenant_id).credits_committed == pytest.approx(0.2)
    assert ledger.due(NOW + 99) == [] and ledger.due(NOW + 100) == [(tenant.tenant_id, live.month)]
    ledger.settle(live, 0.2, 1)  # the live one finishes normally
    assert sweep(ledger, at=NOW + 101).released == 0
    usage = ledger.usage(tenant.tenant_id)
    assert usage.credits_spent == pytest.approx(0.2) and usage.credits_committed == pytest.approx(0.2)
    assert usage.failed_generations == 1 and ledger.due(NOW + 10_000) == []


def test_a_reservation_is_resolved_once_whoever_comes_first(tenants, ledger):
    tenant = make_tenant(tenants, budget_credits=1.0)
    swept, _ = ledger.reserve(tenant, 0.3, 1, Hold("req-late", int(NOW)))
    sweep(ledger, at=NOW + 1)
    assert ledger.settle(swept, 0.3, 1) is None  # taken back already: settling it again would count it twice
    assert ledger.release(swept) is None
    settled, _ = ledger.reserve(tenant, 0.3, 1, Hold("req-done", int(NOW)))
    ledger.settle(settled, 0.3, 1)
    assert sweep(ledger, at=NOW + 1).released == 0  # settled before the sweep: nothing to take back
    usage = ledger.usage(tenant.tenant_id)
    assert (usage.failed_generations, usage.upstream_calls) == (1, 1)
    assert usage.credits_spent == pytest.approx(0.3) and usage.credits_committed == pytest.approx(0.3)


def test_a_reservation_made_during_a_sweep_keeps_its_item_due(tenants, ledger):
    """The sweeper takes an item out of the index only if the count of open reservations is what it saw."""
    tenant = make_tenant(tenants, budget_credits=1.0)
    old, _ = ledger.reserve(tenant, 0.1, 1, Hold("req-dead", int(NOW)))
    ledger.open_reservations(tenant.tenant_id, old.month)  # the sweeper's read...
    ledger.release(old)  # ...its release...
    ledger.reserve(tenant, 0.1, 1, Hold("req-new", int(NOW) + 5))  # ...a new request meanwhile...
    assert not ledger.reschedule(tenant.tenant_id, old.month, seen_open=0, next_due=None)  # ...so it stays due
    assert sweep(ledger, at=NOW + 6).released == 1  # and the new one, once dead, is found
    assert ledger.usage(tenant.tenant_id).credits_committed == 0


def test_a_billing_reservation_is_held_by_its_request_until_its_invocation_ends(tenants, ledger):
    tenant = make_tenant(tenants, budget_credits=1.0)
    billing = TenantBilling(ledger, tenant, 0.2, 1, hold=Hold.for_request("req-1", seconds_left=30, grace_seconds=60))
    billing.reserve()
    held, count, due = ledger.open_reservations(tenant.tenant_id, billing.reservation.month)
    assert count == 1 and list(held) == [billing.reservation]
    assert NOW + 90 <= held[billing.reservation] == due <= time.time() + 92
    billing.settle(1, None)
    assert ledger.open_reservations(tenant.tenant_id, billing.reservation.month)[:2] == ({}, 0)


def job_holding(jobs, ledger, tenant, status, result=None):
    job = Job(job_id=Job.new_id(), namespace="ns", request={"batch_size": 2}, estimate=0.4, status=status)
    job.result = result
    reservation, _ = ledger.reserve(tenant, 0.4, 2, Hold(f"job-{job.job_id}", int(NOW)))
    job.reservation = vars(reservation)
    jobs.create(job)
    return reservation


def test_a_job_still_queued_or_running_keeps_its_reservation(tenants, ledger, jobs):
    tenant = make_tenant(tenants, budget_credits=1.0)
    queued = job_holding(jobs, ledger, tenant, JobStatus.QUEUED)
    running = job_holding(jobs, ledger, tenant, JobStatus.PROCESSING)
    report = sweep(ledger, at=NOW + 1, jobs=jobs)
    assert (report.extended, report.released) == (2, 0)
    held, _, due = ledger.open_reservations(tenant.tenant_id, queued.month)
    assert set(held) == {queued, running} and due == int(NOW + 1) + JOB_HOLD_SECONDS
    assert ledger.usage(tenant.tenant_id).credits_committed == pytest.approx(0.8)


def test_a_job_completed_by_a_worker_that_died_before_settling_is_charged_once(tenants, ledger, jobs):
    tenant = make_tenant(tenants, budget_credits=1.0)
    completed = job_holding(jobs, ledger, tenant, JobStatus.COMPLETED, result={"count": 1, "prefix": "p"})
    failed = job_holding(jobs, ledger, tenant, JobStatus.FAILED)
    report = sweep(ledger, at=NOW + 1, jobs=jobs)
    assert (report.settled, report.released) == (1, 1)
    assert ledger.settle(completed, 0.2, 1) is None  # the worker, had it lived, would not charge again
    assert ledger.release(failed) is None
    usage = ledger.usage(tenant.tenant_id)
    assert (usage.images_generated, usage.failed_generations) == (1, 1)
    assert usage.credits_spent == pytest.approx(0.2) and usage.credits_committed == pytest.approx(0.2)


def test_a_job_reservation_whose_job_never_came_to_be_is_given_back(tenants, ledger, jobs):
    """The submit died between reserving and recording its job."""
    tenant = make_tenant(tenants, budget_credits=1.0)
    ledger.reserve(tenant, 0.4, 2, Hold.for_job("never-recorded"))
    assert sweep(ledger, at=time.time() + JOB_HOLD_SECONDS + 1, jobs=jobs).released == 1
    assert ledger.usage(tenant.tenant_id).credits_committed == 0


def test_a_jobs_reservation_is_held_while_it_runs_and_taken_back_once_it_has_failed(tenants, ledger, jobs):
    tenant = make_tenant(tenants, budget_credits=1.0)
    reservation = job_holding(jobs, ledger, tenant, JobStatus.PROCESSING)
    assert sweep(ledger, at=NOW + 1, jobs=jobs).extended == 1
    later = NOW + 1 + JOB_HOLD_SECONDS
    assert sweep(ledger, at=later - 1, jobs=jobs).items == 0  # not due again before its new hold ends
    jobs.fail(reservation.holder.removeprefix("job-"), "its worker failed it, then died before releasing")
    report = sweep(ledger, at=later, jobs=jobs)
    assert (report.items, report.released, report.extended) == (1, 1, 0)
    usage = ledger.usage(tenant.tenant_id)
    assert (usage.credits_committed, usage.failed_generations) == (0, 1) and ledger.due(later + 10**6) == []
