"""boto3 clients, created lazily once per container and reused across invocations."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from functools import cache
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

# Every way an AWS call can fail (service answers and transport faults alike).
AwsErrors = (BotoCoreError, ClientError)

_CONFIG = Config(
    signature_version="s3v4",
    retries={"max_attempts": 2, "mode": "standard"},
    connect_timeout=2,
    read_timeout=10,
)


@cache
def s3() -> Any:
    return boto3.session.Session().client("s3", config=_CONFIG)


@cache
def dynamodb() -> Any:
    return boto3.session.Session().resource("dynamodb", config=Config(retries={"max_attempts": 3, "mode": "standard"}))


@cache
def sqs() -> Any:
    return boto3.session.Session().client("sqs", config=Config(retries={"max_attempts": 3, "mode": "standard"}))


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
