"""The Meter on DynamoDB beyond the ledger's contract (tests/adapters/test_contracts.py runs that on the Meter and on
its fake): unlimited budgets, the balance record, and budgets kept under real concurrency (moto's server)."""

import threading

import boto3
import pytest

from local.moto_server import start_moto
from segmind_proxy.adapters.dynamo_tenants import TenantRegistry
from segmind_proxy.adapters.dynamo_usage import Meter
from tests.support.aws import create_tenants_table, make_tenant
from tests.support.budgets import reserve_at_once


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

    outcomes = reserve_at_once(meter, tenant)
    usage = meter.usage(tenant.tenant_id)
    assert outcomes.count(True) == 7
    assert usage.images_generated == 7
    assert usage.credits_spent == pytest.approx(0.07)
    assert usage.credits_committed <= 0.075
