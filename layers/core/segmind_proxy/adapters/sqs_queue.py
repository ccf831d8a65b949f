"""The job queue in SQS: a v2 job is sent by id; the worker Lambda reads the queue, and puts off a job that should
be retried later."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from segmind_proxy.adapters.aws_clients import outage_of, sqs
from segmind_proxy.domain.errors import Dependency


class SqsJobQueue:
    def __init__(self, queue_url: str, client: Callable[[], Any] = sqs) -> None:
        self.queue_url = queue_url
        self._client = client

    def send(self, job_id: str) -> None:
        """Raises Outage(JOB_QUEUE) when the message cannot be sent."""
        with outage_of(Dependency.JOB_QUEUE):
            self._client().send_message(QueueUrl=self.queue_url, MessageBody=json.dumps({"job_id": job_id}))

    def retry_after(self, receipt: str, seconds: int) -> None:
        """The message `receipt` names comes back in `seconds`, not after the queue's long visibility timeout (which
        covers a worker's whole run). Raises Outage(JOB_QUEUE) when SQS cannot be told."""
        with outage_of(Dependency.JOB_QUEUE):
            self._client().change_message_visibility(
                QueueUrl=self.queue_url, ReceiptHandle=receipt, VisibilityTimeout=seconds
            )
