"""Clients are built once per container, from one session, even when two threads ask for the first time together."""

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import boto3

from segmind_proxy.adapters import aws_clients, idempotency, upstream_key


def test_every_client_comes_from_one_session(aws, monkeypatch):
    made = []
    original = boto3.session.Session.__init__

    def counting(self, *args, **kwargs):
        made.append(self)
        original(self, *args, **kwargs)

    aws_clients.session.cache_clear()
    clients = (aws_clients.s3, aws_clients.dynamodb, aws_clients.dynamodb_client, aws_clients.sqs)
    for client in (*clients, aws_clients.secrets_manager, upstream_key.secrets, idempotency._persistence):
        client.cache_clear()
    monkeypatch.setattr(boto3.session.Session, "__init__", counting)
    for client in clients:
        client()
    upstream_key.secrets()  # Powertools' providers, over our clients rather than sessions of their own
    idempotency._persistence()
    assert len(made) == 1  # a session per client would load botocore's data files once per client


def test_threads_asking_at_once_share_one_client(aws):
    aws_clients.s3.cache_clear()
    start = threading.Barrier(6)

    def first_use():
        start.wait()
        return aws_clients.s3()

    with ThreadPoolExecutor(6) as pool:
        clients = list(pool.map(lambda _: first_use(), range(6)))
    assert all(client is clients[0] for client in clients)


def test_a_refused_condition_is_told_apart_from_other_dynamodb_errors():
    from botocore.exceptions import ClientError

    def error(code: str) -> ClientError:
        return ClientError({"Error": {"Code": code, "Message": "no"}}, "UpdateItem")

    assert aws_clients.condition_failed(error("ConditionalCheckFailedException"))
    assert not aws_clients.condition_failed(error("ProvisionedThroughputExceededException"))
    assert not aws_clients.condition_failed(ClientError({}, "UpdateItem"))


def _outage(call, dependency):
    from botocore.exceptions import BotoCoreError, ClientError

    from segmind_proxy.domain.errors import Outage

    try:
        call()
    except Outage as outage:
        assert outage.dependency is dependency
        assert isinstance(outage.__cause__, BotoCoreError | ClientError)  # kept for the logs
        return
    raise AssertionError("no Outage")


def test_the_adapters_raise_outages_instead_of_aws_errors(jobs_env, monkeypatch):
    import boto3

    from segmind_proxy.adapters.dynamo_jobs import JobStore
    from segmind_proxy.adapters.dynamo_leases import LeaseStore
    from segmind_proxy.adapters.dynamo_tenants import TenantRegistry
    from segmind_proxy.adapters.dynamo_usage import Meter
    from segmind_proxy.adapters.s3_images import ImageStore
    from segmind_proxy.adapters.sqs_queue import SqsJobQueue
    from segmind_proxy.domain.errors import Dependency
    from segmind_proxy.domain.images import StoredSet
    from tests.support.aws import BUCKET, JOBS_TABLE, TENANTS_TABLE, aws_failing

    resource = boto3.resource("dynamodb")
    stored = StoredSet.transient("t", "r", 1, "jpeg")
    for operation in ("GetItem", "Scan", "UpdateItem", "Query", "HeadObject", "SendMessage", "ChangeMessageVisibility"):
        aws_failing(monkeypatch, operation)
    _outage(lambda: ImageStore(BUCKET).head(stored), Dependency.STORAGE)
    _outage(lambda: JobStore(JOBS_TABLE, lambda: resource).get("j1"), Dependency.JOB_STORE)
    _outage(lambda: LeaseStore(JOBS_TABLE, lambda: resource).held("k"), Dependency.LEASES)
    _outage(lambda: TenantRegistry(TENANTS_TABLE, lambda: resource).by_api_key("key-1"), Dependency.TENANT_REGISTRY)
    _outage(lambda: list(TenantRegistry(TENANTS_TABLE, lambda: resource).all()), Dependency.TENANT_REGISTRY)
    _outage(lambda: Meter(TENANTS_TABLE, lambda: resource).due(0.0), Dependency.LEDGER)
    _outage(
        lambda: SqsJobQueue(jobs_env["queue"]).send("j1"),
        Dependency.JOB_QUEUE,
    )
    _outage(lambda: SqsJobQueue(jobs_env["queue"]).retry_after("receipt", 20), Dependency.JOB_QUEUE)


def test_a_message_put_off_comes_back_when_asked_not_after_the_queues_timeout(jobs_env):
    from segmind_proxy.adapters.sqs_queue import SqsJobQueue

    queue, sqs = SqsJobQueue(jobs_env["queue"]), jobs_env["sqs"]
    queue.send("j1")
    received = sqs.receive_message(QueueUrl=jobs_env["queue"])["Messages"][0]
    queue.retry_after(received["ReceiptHandle"], 0)
    again = sqs.receive_message(QueueUrl=jobs_env["queue"]).get("Messages", [])
    assert [json.loads(message["Body"]) for message in again] == [{"job_id": "j1"}]
    queue.retry_after(again[0]["ReceiptHandle"], 600)
    assert sqs.receive_message(QueueUrl=jobs_env["queue"]).get("Messages", []) == []


def test_answers_that_are_not_outages_are_still_the_adapters_own(jobs_env):
    import boto3

    from segmind_proxy.adapters.dynamo_leases import LeaseStore
    from segmind_proxy.adapters.s3_images import ImageStore
    from segmind_proxy.domain.images import StoredSet
    from tests.support.aws import BUCKET, JOBS_TABLE

    leases = LeaseStore(JOBS_TABLE, lambda: boto3.resource("dynamodb"))
    assert leases.acquire("k", "first", 30)
    assert not leases.acquire("k", "second", 30)  # a condition that did not hold
    leases.release("k", "second")  # not its lease: nothing done, nothing raised
    assert leases.held("k")
    assert ImageStore(BUCKET).head(StoredSet.transient("t", "absent", 1, "jpeg")) is None  # not there
