"""Billing of a request (TenantBilling) on the usage ledger: hits are free, a generation reserves then settles or
releases, a settlement that follows the answer is charged then (or not at all if the answer failed)."""

import pytest

from segmind_proxy.domain.errors import Dependency, FailureKind, RequestInvalid, Unavailable, UpstreamFailure
from segmind_proxy.domain.jobs import Job
from segmind_proxy.domain.usage import BudgetExceeded, Hold
from segmind_proxy.flows.billing import JobBilling, TenantBilling, counting_rejections
from tests.support.aws import make_tenant


def test_a_reservation_given_back_by_a_hit_costs_nothing(tenants, ledger):
    """A request reserves while it takes the coalescing lease; when an identical request's images serve it, the
    reservation goes back and it counts as a free hit."""
    tenant = make_tenant(tenants, budget_credits=1.0)
    billing = TenantBilling(ledger, tenant, 0.25, 1)
    billing.reserve()
    billing.on_hit()
    usage = ledger.usage(tenant.tenant_id)
    assert (usage.cache_hits, usage.credits_committed, usage.images_committed, usage.failed_generations) == (1, 0, 0, 0)
    assert billing.remaining()["credits"] == pytest.approx(1.0)


@pytest.mark.parametrize(("generated", "spent", "remaining_images"), [(4, 0.04, 6), (3, 0.03, 7)])
def test_a_settlement_after_the_answer_is_written_then_and_the_answer_has_its_figures(
    tenants, ledger, deferrer, generated, spent, remaining_images
):
    tenant = make_tenant(tenants, budget_credits=1.0, budget_images=10)
    billing = TenantBilling(ledger, tenant, 0.04, 4)
    billing.reserve()
    billing.settle(generated, None, later=deferrer)
    expected = {"credits": pytest.approx(1.0 - spent), "images": remaining_images}
    assert billing.remaining() == expected  # what the answer's budget headers say, before anything is written
    assert ledger.usage(tenant.tenant_id).credits_spent == 0
    deferrer.run()  # the answer has gone
    usage = ledger.usage(tenant.tenant_id)
    assert (usage.images_generated, usage.upstream_calls, usage.credits_spent) == (generated, 1, pytest.approx(spent))
    assert usage.remaining(tenant) == expected


def test_an_answer_that_fails_before_its_deferred_settlement_is_not_charged(tenants, ledger, deferrer):
    tenant = make_tenant(tenants, budget_credits=1.0)
    billing = TenantBilling(ledger, tenant, 0.04, 4)
    billing.reserve()
    billing.settle(4, None, later=deferrer)
    billing.refund()  # the images reached the client neither in the answer nor in S3
    deferrer.run()
    usage = ledger.usage(tenant.tenant_id)
    assert (usage.credits_spent, usage.credits_committed, usage.images_generated, usage.failed_generations) == (
        0,
        0,
        0,
        1,
    )


def test_ledger_failure_before_the_call_refuses_with_503_and_after_it_is_survived(tenants, ledger):
    tenant = make_tenant(tenants, budget_credits=1.0)
    billing = TenantBilling(ledger, tenant, 0.01, 1)
    ledger.unreachable("reserve")
    with pytest.raises(Unavailable) as refused:
        billing.reserve()
    assert refused.value.dependency is Dependency.LEDGER and "nothing was charged" in refused.value.message
    ledger.recover()
    billing.reserve()
    ledger.unreachable("settle")
    billing.settle(
        1, None
    )  # does not raise: the image is delivered; the reservation stays held (over-, never under-counted)
    assert ledger.usage(tenant.tenant_id).credits_committed == pytest.approx(0.01)


def test_a_hit_whose_figures_are_known_is_counted_after_the_answer(tenants, ledger, deferrer):
    tenant = make_tenant(tenants, budget_credits=1.0)
    read = ledger.usage(tenant.tenant_id)  # as read with the tenant's profile
    billing = TenantBilling(ledger, tenant, 0.01, 1, usage=read)
    billing.on_hit(later=deferrer)
    assert billing.usage is read and ledger.usage(tenant.tenant_id).cache_hits == 0
    deferrer.run()
    assert ledger.usage(tenant.tenant_id).cache_hits == 1


def test_a_hit_whose_figures_the_answer_needs_is_counted_before_it(tenants, ledger, deferrer):
    tenant = make_tenant(tenants, budget_credits=1.0)
    billing = TenantBilling(ledger, tenant, 0.01, 1)
    billing.on_hit(later=deferrer)
    assert deferrer.tasks == [] and billing.usage.cache_hits == 1 == ledger.usage(tenant.tenant_id).cache_hits


def test_a_reservation_is_released_once_and_a_settlement_refunded_once(tenants, ledger):
    tenant = make_tenant(tenants, budget_credits=1.0)
    released = TenantBilling(ledger, tenant, 0.01, 1)
    released.reserve()
    released.release()
    released.release()
    released.settle(1, None)  # nothing reserved any more: nothing to charge
    settled = TenantBilling(ledger, tenant, 0.02, 2)
    settled.reserve()
    settled.settle(2, None)
    settled.refund()
    settled.refund()
    usage = ledger.usage(tenant.tenant_id)
    assert (usage.failed_generations, usage.images_generated, usage.credits_spent, usage.credits_committed) == (
        2,
        0,
        0,
        0,
    )


def test_a_request_over_its_budget_is_refused_and_counted_as_rejected(tenants, ledger, deferrer):
    tenant = make_tenant(tenants, budget_images=1)
    billing = TenantBilling(ledger, tenant, 0.02, 2)
    with pytest.raises(BudgetExceeded), counting_rejections(tenant, ledger, later=deferrer):
        billing.reserve()
    assert ledger.usage(tenant.tenant_id).rejected_requests == 0  # the count follows the refusal
    deferrer.run()
    usage = ledger.usage(tenant.tenant_id)
    assert (usage.requests, usage.rejected_requests, usage.credits_committed) == (1, 1, 0)


def test_an_invalid_request_is_counted_as_rejected_and_other_errors_are_not(tenants, ledger):
    tenant = make_tenant(tenants)
    with pytest.raises(RequestInvalid), counting_rejections(tenant, ledger):
        raise RequestInvalid("'steps' must be at most 8")
    with pytest.raises(UpstreamFailure), counting_rejections(tenant, ledger):
        raise UpstreamFailure(FailureKind.SERVER_ERROR, "upstream down")
    assert ledger.usage(tenant.tenant_id).rejected_requests == 1


# -- a job's billing: the reservation lives on the job until it is COMPLETED ----------------------------------------
def submitted(jobs, ledger, tenant, estimate=0.02, batch_size=2):
    """A job as a submit leaves it: its reservation held under the job and recorded on it."""
    job = Job(job_id=Job.new_id(), namespace=tenant.tenant_id, tenant_id=tenant.tenant_id, estimate=estimate,
              request={"prompt": "p", "batch_size": batch_size})  # fmt: skip
    reservation, _ = ledger.reserve(tenant, estimate, batch_size, Hold.for_job(job.job_id))
    job.reservation = vars(reservation)
    return jobs.create(job)


def test_a_jobs_settlement_waits_for_its_completion(tenants, ledger, jobs):
    tenant = make_tenant(tenants, budget_credits=1.0)
    job = submitted(jobs, ledger, tenant)
    billing = JobBilling(ledger, tenant, job, jobs, 2)
    billing.reserve()  # held since the submit: nothing reserved again
    billing.settle(2, None)
    assert ledger.usage(tenant.tenant_id).credits_spent == 0  # not COMPLETED yet: nothing charged
    billing.finalize()
    usage = ledger.usage(tenant.tenant_id)
    assert (usage.requests, usage.images_generated) == (1, 2) and usage.credits_spent == pytest.approx(0.02)
    assert ledger.open_reservations(tenant.tenant_id, usage.month)[:2] == ({}, 0)


def test_a_short_job_batch_is_charged_for_what_came(tenants, ledger, jobs):
    tenant = make_tenant(tenants, budget_credits=1.0)
    billing = JobBilling(ledger, tenant, submitted(jobs, ledger, tenant), jobs, 2)
    billing.settle(1, None)
    billing.finalize()
    assert ledger.usage(tenant.tenant_id).credits_spent == pytest.approx(0.01)


def test_a_failed_attempt_releases_the_jobs_reservation_and_the_next_holds_it_again(tenants, ledger, jobs):
    tenant = make_tenant(tenants, budget_credits=1.0)
    job = submitted(jobs, ledger, tenant)
    JobBilling(ledger, tenant, job, jobs, 2).release()
    released = jobs.get(job.job_id)
    assert released.reservation is None and ledger.usage(tenant.tenant_id).credits_committed == 0
    retry = JobBilling(ledger, tenant, released, jobs, 2)
    retry.reserve()
    held = jobs.get(job.job_id).reservation
    assert held == vars(retry.reservation) and held["holder"] == f"job-{job.job_id}"
    assert ledger.usage(tenant.tenant_id).credits_committed == pytest.approx(0.02)
