"""Billing of a request (TenantBilling) on the usage ledger: hits are free, a generation reserves then settles or
releases, a settlement that follows the answer is charged then (or not at all if the answer failed)."""

import pytest

from segmind_proxy.domain.errors import GatewayError
from segmind_proxy.flows.billing import TenantBilling
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
    with pytest.raises(GatewayError) as refused:
        billing.reserve()
    assert refused.value.status == 503
    ledger.recover()
    billing.reserve()
    ledger.unreachable("settle")
    billing.settle(
        1, None
    )  # does not raise: the image is delivered; the reservation stays held (over-, never under-counted)
    assert ledger.usage(tenant.tenant_id).credits_committed == pytest.approx(0.01)
