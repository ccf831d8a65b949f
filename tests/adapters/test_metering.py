import threading
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest

from local.moto_server import start_moto
from segmind_proxy.adapters.dynamo_tenants import TenantRegistry
from segmind_proxy.adapters.dynamo_usage import Meter
from segmind_proxy.domain.usage import BudgetExceeded
from segmind_proxy.flows.billing import TenantBilling
from tests.support.aws import create_tenants_table, make_tenant
from tests.support.lambda_events import Later


def test_reserve_then_settle_charges_what_was_generated(registry, meter):
    tenant = make_tenant(registry, budget_credits=1.0, budget_images=10)
    reservation, usage = meter.reserve(tenant, 0.04, 4)
    assert usage.credits_committed == pytest.approx(0.04) and usage.images_committed == 4
    usage = meter.settle(reservation, 0.04, 4)
    assert (usage.requests, usage.images_generated, usage.upstream_calls) == (1, 4, 1)
    assert usage.credits_spent == pytest.approx(0.04) and usage.credits_committed == pytest.approx(0.04)
    assert usage.remaining(tenant) == {"credits": pytest.approx(0.96), "images": 6}


def test_release_charges_nothing(registry, meter):
    tenant = make_tenant(registry, budget_credits=1.0)
    reservation, _ = meter.reserve(tenant, 0.5, 1)
    usage = meter.release(reservation)
    assert usage.credits_committed == 0 and usage.credits_spent == 0 and usage.images_committed == 0
    assert usage.failed_generations == 1


def test_hits_are_counted_and_free(registry, meter):
    tenant = make_tenant(registry, budget_credits=0.0)
    usage = meter.record_hit(tenant)
    assert (usage.requests, usage.cache_hits, usage.credits_committed) == (1, 1, 0)


def test_a_reservation_given_back_by_a_hit_costs_nothing(registry, meter):
    """A request reserves while it takes the coalescing lease; when an identical request's images serve it, the
    reservation goes back and it counts as a free hit."""
    tenant = make_tenant(registry, budget_credits=1.0)
    billing = TenantBilling(meter, tenant, 0.25, 1)
    billing.reserve()
    billing.on_hit()
    usage = meter.usage(tenant.tenant_id)
    assert (usage.cache_hits, usage.credits_committed, usage.images_committed, usage.failed_generations) == (1, 0, 0, 0)
    assert billing.remaining()["credits"] == pytest.approx(1.0)


@pytest.mark.parametrize(("generated", "spent", "remaining_images"), [(4, 0.04, 6), (3, 0.03, 7)])
def test_a_settlement_after_the_answer_is_written_then_and_the_answer_has_its_figures(
    registry, meter, generated, spent, remaining_images
):
    tenant = make_tenant(registry, budget_credits=1.0, budget_images=10)
    billing, later = TenantBilling(meter, tenant, 0.04, 4), Later()
    billing.reserve()
    billing.settle(generated, None, later=later)
    expected = {"credits": pytest.approx(1.0 - spent), "images": remaining_images}
    assert billing.remaining() == expected  # what the answer's budget headers say, before anything is written
    assert meter.usage(tenant.tenant_id).credits_spent == 0
    later.run()  # the answer has gone
    usage = meter.usage(tenant.tenant_id)
    assert (usage.images_generated, usage.upstream_calls, usage.credits_spent) == (generated, 1, pytest.approx(spent))
    assert usage.remaining(tenant) == expected


def test_an_answer_that_fails_before_its_deferred_settlement_is_not_charged(registry, meter):
    tenant = make_tenant(registry, budget_credits=1.0)
    billing, later = TenantBilling(meter, tenant, 0.04, 4), Later()
    billing.reserve()
    billing.settle(4, None, later=later)
    billing.refund()  # the images reached the client neither in the answer nor in S3
    later.run()
    usage = meter.usage(tenant.tenant_id)
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
def test_a_request_larger_than_the_budget_is_refused_untouched(registry, meter, budget, cost, field):
    tenant = make_tenant(registry, **budget)
    with pytest.raises(BudgetExceeded) as refused:
        meter.reserve(tenant, *cost)
    assert refused.value.status == 402 and field in refused.value.message
    assert meter.usage(tenant.tenant_id).requests == 0


def test_budget_stops_at_the_limit(registry, meter):
    tenant = make_tenant(registry, budget_images=2)
    for _ in range(2):
        meter.settle(meter.reserve(tenant, 0.01, 1)[0], 0.01, 1)
    with pytest.raises(BudgetExceeded, match="images"):
        meter.reserve(tenant, 0.01, 1)


def test_no_budget_means_unlimited(registry, meter):
    tenant = make_tenant(registry)
    for _ in range(5):
        meter.reserve(tenant, 100.0, 10)
    assert meter.usage(tenant.tenant_id).credits_committed == pytest.approx(500.0)


def test_balance_keeps_the_months_first_and_last(meter):
    meter.record_balance(100.0)
    meter.record_balance(97.5)
    balance = meter.balance()
    assert balance["first_balance"] == 100.0 and balance["last_balance"] == 97.5


def test_ledger_failure_before_the_call_refuses_with_503_and_after_it_is_survived(registry, meter, monkeypatch):
    from botocore.exceptions import ClientError

    tenant = make_tenant(registry, budget_credits=1.0)
    billing = TenantBilling(meter, tenant, 0.01, 1)
    boom = ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow"}}, "UpdateItem")

    def fail(*args, **kwargs):
        raise boom

    monkeypatch.setattr(meter, "reserve", fail)
    with pytest.raises(Exception) as refused:
        billing.reserve()
    assert getattr(refused.value, "status", None) == 503
    monkeypatch.undo()
    billing.reserve()
    monkeypatch.setattr(meter, "settle", fail)
    billing.settle(
        1, None
    )  # does not raise: the image is delivered; the reservation stays held (over-, never under-counted)
    assert meter.usage(tenant.tenant_id).credits_committed == pytest.approx(0.01)


@pytest.fixture(scope="module")
def moto_endpoint():
    """The local stack's moto server (with DynamoDB's write atomicity), for real concurrency over HTTP."""
    server = start_moto("127.0.0.1", 0)
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_concurrent_requests_never_overrun_the_budget(moto_endpoint):
    session = boto3.session.Session(region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t")
    local = threading.local()

    def resource():
        if not hasattr(local, "ddb"):
            local.ddb = session.resource("dynamodb", endpoint_url=moto_endpoint)
        return local.ddb

    create_tenants_table(resource(), "concurrency")
    registry, meter = TenantRegistry("concurrency", resource), Meter("concurrency", resource)
    tenant = make_tenant(registry, budget_credits=0.075)  # room for 7 requests of 0.01

    def attempt(_):
        try:
            reservation, _ = meter.reserve(tenant, 0.01, 1)
        except BudgetExceeded:
            return False
        meter.settle(reservation, 0.01, 1)
        return True

    with ThreadPoolExecutor(max_workers=16) as pool:
        outcomes = list(pool.map(attempt, range(60)))
    usage = meter.usage(tenant.tenant_id)
    assert outcomes.count(True) == 7
    assert usage.images_generated == 7
    assert usage.credits_spent == pytest.approx(0.07)
    assert usage.credits_committed <= 0.075
