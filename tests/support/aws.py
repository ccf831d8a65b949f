"""AWS as the tests set it up under moto: the names the handler is configured with, tables as the template declares
them, tenants, and a way to make a service unreachable."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError

SECRET_NAME = "segmind-proxy-test/segmind-api-key"
SEGMIND_KEY = "sg_unit_test_key_0123456789"
BUCKET = "segmind-proxy-test-cache"
TENANTS_TABLE = "segmind-proxy-test-tenants"
JOBS_TABLE = "segmind-proxy-test-jobs"


def aws_unreachable(*args: Any, **kwargs: Any) -> Any:
    """Stands in for any AWS call while the service cannot be reached."""
    raise EndpointConnectionError(endpoint_url="https://aws.example")


def aws_failing(
    monkeypatch: pytest.MonkeyPatch,
    operation: str,
    when: Callable[[dict[str, Any]], bool] = lambda params: True,
    error: Exception | None = None,
) -> None:
    """Makes botocore's `operation` calls (GetObject, UpdateItem, ...) whose parameters satisfy `when` fail as if the
    service could not be reached (or with `error`), beneath the adapters: they meet the failure as they would meet
    AWS's. Other calls go through; a second use adds to the first."""
    import botocore.client

    make_call = botocore.client.BaseClient._make_api_call

    def call(client: Any, name: str, params: dict[str, Any]) -> Any:
        if name == operation and when(params):
            raise error or EndpointConnectionError(endpoint_url="https://aws.example")
        return make_call(client, name, params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", call)


def clear_caches() -> None:
    """Forget the container's long-lived objects (settings, clients, the composition root's services)."""
    from segmind_proxy.adapters import idempotency, upstream_key
    from segmind_proxy.adapters.aws_clients import dynamodb, dynamodb_client, s3, secrets_manager, session, sqs
    from segmind_proxy.composition import (
        catalog,
        generation_service,
        job_queue,
        job_store,
        meter,
        services,
        tenant_registry,
        upstream,
    )
    from segmind_proxy.settings import get_settings

    for cached in (
        get_settings,
        generation_service,
        upstream,
        services,
        session,
        s3,
        dynamodb,
        dynamodb_client,
        sqs,
        secrets_manager,
        upstream_key.secrets,
        tenant_registry,
        meter,
        catalog,
        job_store,
        job_queue,
        idempotency._persistence,
        idempotency._config,
    ):
        cached.cache_clear()


def create_table(resource: Any, logical_id: str, name: str) -> None:
    """A DynamoDB table exactly as template.yaml declares it."""
    from local.template import load_template

    props = load_template()["Resources"][logical_id]["Properties"]
    indexes = {"GlobalSecondaryIndexes": props["GlobalSecondaryIndexes"]} if "GlobalSecondaryIndexes" in props else {}
    resource.create_table(
        TableName=name,
        AttributeDefinitions=props["AttributeDefinitions"],
        KeySchema=props["KeySchema"],
        BillingMode=props["BillingMode"],
        **indexes,
    )


def create_tenants_table(resource: Any, name: str = TENANTS_TABLE) -> None:
    create_table(resource, "TenantsTable", name)


def make_tenant(registry: Any, name: str = "acme", key_id: str = "key-acme", **fields: Any) -> Any:
    from segmind_proxy.domain.tenants import Tenant, new_tenant_id

    return registry.create(Tenant(tenant_id=new_tenant_id(), name=name, plan="pro", api_key_id=key_id, **fields))


def order_against_tenant_check(s3_operation: str) -> list[str]:
    """Slows the tenant check (DynamoDB GetItem, or BatchGetItem with the month's usage) by 0.3 s; the returned list
    fills, in time order, with when it ends and when each S3 `s3_operation` starts."""
    from segmind_proxy.adapters.aws_clients import dynamodb, s3

    seen: list[tuple[float, str]] = []
    order: list[str] = []

    def note(name: str) -> None:
        seen.append((time.monotonic(), name))
        order[:] = [n for _, n in sorted(seen)]

    def slow_tenant_check(**_: Any) -> None:
        time.sleep(0.3)
        note("tenant check done")

    for read in ("GetItem", "BatchGetItem"):
        dynamodb().meta.client.meta.events.register(f"before-send.dynamodb.{read}", slow_tenant_check)
    s3().meta.events.register(f"before-send.s3.{s3_operation}", lambda **_: note("cache read"))
    return order
