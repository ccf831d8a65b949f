"""Unit fixtures: moto for AWS, `responses` for Segmind, and API Gateway REST proxy events for the handler."""

from __future__ import annotations

import base64
import json
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
import responses
from botocore.exceptions import EndpointConnectionError
from moto import mock_aws

from local.fake_segmind import render
from tests.samples import SEGMIND_SAMPLE

SLUG = "stable-diffusion-3.5-turbo-txt2img"
UPSTREAM = "https://segmind.test"
UPSTREAM_URL = f"{UPSTREAM}/v1/{SLUG}"
SEGMIND_KEY = "sg_unit_test_key_0123456789"
SECRET_NAME = "segmind-proxy-test/segmind-api-key"
BUCKET = "segmind-proxy-test-cache"

SAMPLE = SEGMIND_SAMPLE


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


def _clear_caches() -> None:
    from segmind_proxy.adapters import idempotency, upstream_key
    from segmind_proxy.adapters.aws_clients import dynamodb, dynamodb_client, s3, secrets_manager, session, sqs
    from segmind_proxy.composition import generation_service, job_store, meter, services, tenant_registry
    from segmind_proxy.domain.pricing import price_table
    from segmind_proxy.settings import get_settings

    for cached in (
        get_settings,
        generation_service,
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
        price_table,
        job_store,
        idempotency._persistence,
        idempotency._config,
    ):
        cached.cache_clear()


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {
        "SEGMIND_BASE_URL": UPSTREAM,
        "SEGMIND_API_KEY_SECRET": SECRET_NAME,
        "CACHE_BUCKET": BUCKET,
        "UPSTREAM_MAX_ATTEMPTS": "3",
        "DEADLINE_MARGIN_SECONDS": "0",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    _clear_caches()
    yield values
    _clear_caches()


@pytest.fixture
def aws(env: dict[str, str]) -> Iterator[dict[str, Any]]:
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        secrets = boto3.client("secretsmanager")
        secrets.create_secret(Name=SECRET_NAME, SecretString=SEGMIND_KEY)
        yield {"s3": s3, "secrets": secrets}


class Upstream:
    """A `responses`-mocked Segmind that renders real images via the fake's renderer."""

    def __init__(self, mock: responses.RequestsMock) -> None:
        self.mock = mock
        self.credits = 100.0

    def calls(self) -> list[Any]:
        return [c for c in self.mock.calls if c.request.url == UPSTREAM_URL]

    def sent_bodies(self) -> list[dict[str, Any]]:
        return [json.loads(c.request.body) for c in self.calls()]

    def succeed(self, *, seed_header: int | None = None, times: int = 1) -> None:
        def reply(request: Any) -> tuple[int, dict[str, str], str]:
            body = json.loads(request.body)
            seed = body["seed"] if body["seed"] != -1 else (seed_header or 777)
            images = [
                base64.b64encode(
                    render(body["prompt"], seed + i, body["width"], body["height"], body["image_format"], 80)
                ).decode()
                for i in range(body["batch_size"])
            ]
            self.credits -= 0.01
            headers = {"x-remaining-credits": f"{self.credits:.2f}", "x-seed-value": str(seed), "x-request-id": "up-1"}
            payload = {"image": images[0]} if len(images) == 1 else {"images": images}
            return 200, headers, json.dumps(payload)

        for _ in range(times):
            self.mock.add_callback(responses.POST, UPSTREAM_URL, callback=reply)

    def fail(self, status: int, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> None:
        self.mock.add(responses.POST, UPSTREAM_URL, json=body or {"error": "boom"}, status=status, headers=headers)


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield Upstream(mock)


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


class Later:
    """Stands in for the after-response extension: holds deferred work until `run`, as if the answer had gone."""

    def __init__(self) -> None:
        self.tasks: list[tuple[Any, tuple[Any, ...]]] = []

    def defer(self, task: Any, *args: Any) -> None:
        self.tasks.append((task, args))

    def run(self) -> None:
        for task, args in self.tasks:
            task(*args)
        self.tasks.clear()


@pytest.fixture
def later(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Later:
    """The handler's work after the answer, held until `run`. List it after the fixtures that set the environment
    (`tenancy`, `jobs_env`): they rebuild the generation service it patches."""
    from segmind_proxy.composition import generation_service

    held = Later()
    monkeypatch.setattr(generation_service(), "later", held)
    return held


class Context:
    function_name = "ApiFunction"
    function_version = "$LATEST"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:ApiFunction"
    log_group_name = "/aws/lambda/ApiFunction"
    log_stream_name = "test"

    def __init__(self, remaining_ms: int = 30000) -> None:
        self.aws_request_id = str(uuid.uuid4())
        self._remaining = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self._remaining


def api_event(
    body: Any = None,
    *,
    method: str = "POST",
    path: str = f"/v1/{SLUG}",
    headers: dict[str, str] | None = None,
    api_key_id: str | None = "tenant-a",
    raw: bytes | None = None,
) -> dict[str, Any]:
    """A REST API proxy event as API Gateway sends it with BinaryMediaTypes */*: the body arrives base64-encoded."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    return {
        "resource": path,
        "path": path,
        "httpMethod": method,
        "headers": all_headers,
        "multiValueHeaders": {k: [v] for k, v in all_headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariables": None,
        "body": base64.b64encode(data).decode() if data else None,
        "isBase64Encoded": bool(data),
        "requestContext": {
            "requestId": str(uuid.uuid4()),
            "stage": "prod",
            "resourcePath": path,
            "httpMethod": method,
            "path": f"/prod{path}",
            "identity": {"apiKeyId": api_key_id, "apiKey": "client-key-never-forwarded", "sourceIp": "203.0.113.9"},
        },
    }


@pytest.fixture
def invoke(aws: dict[str, Any]) -> Any:
    """Call the real Lambda handler with an event; returns the Lambda response dict."""
    import functions.api.app as app_module

    def call(event: dict[str, Any], remaining_ms: int = 30000) -> dict[str, Any]:
        return app_module.lambda_handler(event, Context(remaining_ms))

    return call


def body_bytes(response: dict[str, Any]) -> bytes:
    return base64.b64decode(response["body"]) if response.get("isBase64Encoded") else response["body"].encode()


def body_json(response: dict[str, Any]) -> Any:
    return json.loads(body_bytes(response))


TENANTS_TABLE = "segmind-proxy-test-tenants"


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


@pytest.fixture
def ddb(aws: dict[str, Any]) -> Any:
    resource = boto3.resource("dynamodb")
    create_tenants_table(resource)
    return resource


@pytest.fixture
def registry(ddb: Any) -> Any:
    from segmind_proxy.adapters.dynamo_tenants import TenantRegistry

    return TenantRegistry(TENANTS_TABLE, lambda: ddb)


@pytest.fixture
def tenancy(ddb: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The handler with tenancy on (TENANTS_TABLE set), as deployed; returns the handler's own registry."""
    from segmind_proxy.composition import tenant_registry

    monkeypatch.setenv("TENANTS_TABLE", TENANTS_TABLE)
    _clear_caches()
    return tenant_registry()


@pytest.fixture
def meter(ddb: Any) -> Any:
    from segmind_proxy.adapters.dynamo_usage import Meter

    return Meter(TENANTS_TABLE, lambda: ddb)


def make_tenant(registry: Any, name: str = "acme", key_id: str = "key-acme", **fields: Any) -> Any:
    from segmind_proxy.domain.tenants import Tenant, new_tenant_id

    return registry.create(Tenant(tenant_id=new_tenant_id(), name=name, plan="pro", api_key_id=key_id, **fields))


JOBS_TABLE = "segmind-proxy-test-jobs"


@pytest.fixture
def jobs_env(tenancy: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Tenancy plus the async pieces (jobs table, queue, dead-letter queue), as the template wires them."""
    resource = boto3.resource("dynamodb")
    create_table(resource, "JobsTable", JOBS_TABLE)
    sqs = boto3.client("sqs")
    dlq = sqs.create_queue(QueueName="jobs-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue = sqs.create_queue(
        QueueName="jobs",
        Attributes={"RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 3})},
    )["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    for name, value in {
        "JOBS_TABLE": JOBS_TABLE,
        "JOBS_QUEUE_URL": queue,
        "JOBS_DEAD_LETTER_ARN": dlq_arn,
        "MAX_JOB_ATTEMPTS": "3",
    }.items():
        monkeypatch.setenv(name, value)
    _clear_caches()
    return {"sqs": sqs, "queue": queue, "queue_arn": queue_arn, "dlq": dlq, "dlq_arn": dlq_arn, "registry": tenancy}


def sqs_event(sqs: Any, queue: str, queue_arn: str) -> dict[str, Any] | None:
    """What Lambda's event source mapping would deliver next from the queue (None if empty)."""
    from local.event_sources import sqs_record

    messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=1, AttributeNames=["All"]).get("Messages", [])
    return {"Records": [sqs_record(m, queue_arn, "us-east-1") for m in messages]} if messages else None


@pytest.fixture
def worker(jobs_env):
    import functions.worker.app as worker_app

    def run(queue="queue"):
        event = sqs_event(jobs_env["sqs"], jobs_env[queue], jobs_env[f"{queue}_arn"])
        assert event is not None, f"nothing on the {queue}"
        jobs_env["last_receipt"] = event["Records"][0]["receiptHandle"]
        response = worker_app.lambda_handler(event, Context(60000))
        failures = response.get("batchItemFailures", [])
        if not failures:  # what the event source mapping does with a success
            jobs_env["sqs"].delete_message(QueueUrl=jobs_env[queue], ReceiptHandle=event["Records"][0]["receiptHandle"])
        return failures

    return run


class _CurrentStdout:
    """Whatever sys.stdout is when a line is written (pytest swaps it between a test's phases)."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


@pytest.fixture
def logs(capsys):
    """capsys that also sees the function's log lines: Powertools' handler keeps the stdout it was created with
    (pytest's, from whichever test imported it first), so it writes to the current one instead."""
    from segmind_proxy.observability import logger

    handler = logger.registered_handler
    previous, handler.stream = handler.stream, _CurrentStdout()  # not setStream: it flushes the old, maybe closed, one
    yield capsys
    handler.stream = previous
