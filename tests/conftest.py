"""Shared test setup: an environment that can never reach real AWS, set before any project module is imported; and
the fixtures the folders share: moto for AWS, `responses` for Segmind, the handlers as Lambda runs them."""

import os

os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_SERVICE_NAME": "segmind-proxy-test",
        "POWERTOOLS_METRICS_NAMESPACE": "SegmindProxyTest",
    }
)
os.environ.pop("AWS_ENDPOINT_URL", None)
os.environ.pop("AWS_PROFILE", None)


def _share_one_botocore_loader() -> None:
    """A container makes one boto3 Session, once; the unit tests rebuild it for every test, and each new Session
    would parse the service models' JSON again (seconds per run). One loader, shared by every Session in this
    process, parses each model once."""
    from functools import cache

    import botocore.loaders
    import botocore.session

    shared = cache(botocore.loaders.create_loader)
    botocore.session.create_loader = shared  # type: ignore[assignment]


_share_one_botocore_loader()

# ruff: noqa: E402  (the imports below must follow the environment above)
import json
import sys
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import responses
from moto import mock_aws

from tests.support.aws import (
    BUCKET,
    JOBS_TABLE,
    SECRET_NAME,
    SEGMIND_KEY,
    TENANTS_TABLE,
    clear_caches,
    create_table,
    create_tenants_table,
)
from tests.support.lambda_events import Context, sqs_event
from tests.support.segmind import UPSTREAM, MockedSegmind


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
    clear_caches()
    yield values
    clear_caches()


@pytest.fixture
def aws(env: dict[str, str]) -> Iterator[dict[str, Any]]:
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        secrets = boto3.client("secretsmanager")
        secrets.create_secret(Name=SECRET_NAME, SecretString=SEGMIND_KEY)
        yield {"s3": s3, "secrets": secrets}


@pytest.fixture
def upstream() -> Iterator[MockedSegmind]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield MockedSegmind(mock)


@pytest.fixture
def invoke(aws: dict[str, Any]) -> Any:
    """Call the real Lambda handler with an event; returns the Lambda response dict."""
    import functions.api.app as app_module

    def call(event: dict[str, Any], remaining_ms: int = 30000) -> dict[str, Any]:
        return app_module.lambda_handler(event, Context(remaining_ms))

    return call


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
    clear_caches()
    return tenant_registry()


@pytest.fixture
def meter(ddb: Any) -> Any:
    from segmind_proxy.adapters.dynamo_usage import Meter

    return Meter(TENANTS_TABLE, lambda: ddb)


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
    clear_caches()
    return {"sqs": sqs, "queue": queue, "queue_arn": queue_arn, "dlq": dlq, "dlq_arn": dlq_arn, "registry": tenancy}


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
