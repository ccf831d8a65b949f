"""boto3 clients, created lazily once per container and reused across invocations."""

from __future__ import annotations

import inspect
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache, wraps
from typing import Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from segmind_proxy.domain.errors import Dependency, Outage

# Every way an AWS call can fail (service answers and transport faults alike).
AwsErrors = (BotoCoreError, ClientError)

Adapter = TypeVar("Adapter", bound=type)


@contextmanager
def outage_of(dependency: Dependency) -> Iterator[None]:
    """AWS errors raised in the block are raised again as Outage(dependency), with the AWS error as their cause."""
    try:
        yield
    except AwsErrors as exc:
        raise Outage(dependency) from exc


def raising_outages(dependency: Dependency) -> Callable[[Adapter], Adapter]:
    """A class decorator for an adapter: its public methods raise Outage(dependency) instead of AWS errors, so the
    flows never see botocore's. The AWS errors a method handles itself (a condition that did not hold, an object
    that is not there) are handled inside it, as before."""

    def translated(method: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.isgeneratorfunction(method):

            @wraps(method)
            def generator(*args: Any, **kwargs: Any) -> Iterator[Any]:
                with outage_of(dependency):
                    yield from method(*args, **kwargs)

            return generator

        @wraps(method)
        def call(*args: Any, **kwargs: Any) -> Any:
            with outage_of(dependency):
                return method(*args, **kwargs)

        return call

    def decorate(adapter: Adapter) -> Adapter:
        for name, member in list(vars(adapter).items()):
            if not name.startswith("_") and inspect.isfunction(member):
                setattr(adapter, name, translated(member))
        return adapter

    return decorate


def condition_failed(exc: ClientError) -> bool:
    """Whether DynamoDB refused a conditional write because its condition did not hold (nothing was written)."""
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


_CONFIG = Config(
    signature_version="s3v4",
    retries={"max_attempts": 2, "mode": "standard"},
    connect_timeout=2,
    read_timeout=10,
)
_RETRYING = Config(retries={"max_attempts": 3, "mode": "standard"})


# One session for every client, so botocore reads its endpoint and service data files once per container (a
# second session read them again: about 75 ms of a cold start). Sessions are not thread-safe, and the first request
# may build two clients at once (the cache read overlaps the tenant check), so building is serialised.
_building = threading.Lock()


@cache
def session() -> boto3.session.Session:
    return boto3.session.Session()


def _built_once(build: Callable[[], Any]) -> Callable[[], Any]:
    built = cache(build)

    def get() -> Any:
        with _building:
            return built()

    get.cache_clear = built.cache_clear  # type: ignore[attr-defined]
    get.cache_info = built.cache_info  # type: ignore[attr-defined]
    return get


@_built_once
def s3() -> Any:
    return session().client("s3", config=_CONFIG)


@_built_once
def dynamodb() -> Any:
    return session().resource("dynamodb", config=_RETRYING)


@_built_once
def dynamodb_client() -> Any:
    """The low-level client, for Powertools' idempotency layer (the resource's own client converts types)."""
    return session().client("dynamodb", config=_RETRYING)


@_built_once
def sqs() -> Any:
    return session().client("sqs", config=_RETRYING)


@_built_once
def secrets_manager() -> Any:
    return session().client("secretsmanager", config=_RETRYING)


# KMS signs each marked image's manifest on a miss: few retries and short timeouts, as the image is waiting.
_KMS_CONFIG = Config(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=2, read_timeout=5)


@_built_once
def kms() -> Any:
    return session().client("kms", config=_KMS_CONFIG)


# Bedrock's ApplyGuardrail screens a prompt before any cost. Small timeouts and one retry (`max_attempts` counts
# retries: two attempts in all): a screen has a second or two (SCREEN_TIMEOUT_SECONDS, or what is left of the
# request's deadline), and the read timeout also bounds how long an abandoned call keeps its worker.
_GUARDRAIL_CONFIG = Config(connect_timeout=1, read_timeout=5, retries={"max_attempts": 1, "mode": "standard"})


@_built_once
def bedrock_runtime() -> Any:
    return session().client("bedrock-runtime", config=_GUARDRAIL_CONFIG)


_CLIENTS = (s3, dynamodb, dynamodb_client, sqs, secrets_manager, kms, bedrock_runtime)


def build_clients() -> None:
    """Build every client now (SnapStart's before-snapshot hook): no request is made, so no connection is opened."""
    for client in _CLIENTS:
        client()


def drop_connections() -> None:
    """Empty the connection pools of every client built so far, so each opens fresh connections when next used
    (SnapStart's after-restore hook: a restored environment must not reuse sockets from the one that was
    snapshotted). The clients themselves, and the tables and other objects holding them, stay as they are."""
    for client in _CLIENTS:
        if client.cache_info().currsize:  # type: ignore[attr-defined]
            built = client()
            low_level = getattr(getattr(built, "meta", None), "client", built)  # a resource's own client
            low_level._endpoint.http_session.close()


class DynamoTable:
    """An adapter over one DynamoDB table: the resource is injected (tests, the CLI) or the container's own."""

    def __init__(
        self, table_name: str, resource: Callable[[], Any] | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.table_name = table_name
        self._resource = resource or dynamodb
        self._clock = clock
        self._per_thread = threading.local()

    @property
    def table(self) -> Any:
        # boto3 builds a new Table class on every `.Table()` (about a millisecond of CPU, a quarter of a miss's), and
        # resources are not thread-safe: one Table per thread, built once.
        table = getattr(self._per_thread, "table", None)
        if table is None:
            table = self._per_thread.table = self._resource().Table(self.table_name)
        return table
