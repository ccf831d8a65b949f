"""Lambda's event sources, locally. SQS: pollers receive from the queue (moto), invoke the function with an SQS
event, delete what succeeded and leave failures (and crashes) to be delivered again after the visibility timeout;
moto's redrive policy moves a message to the dead-letter queue after maxReceiveCount. Schedules: EventBridge's
rate() rules invoke their function with a scheduled event, once per period."""

from __future__ import annotations

import hashlib
import re
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

from .lambda_runtime import LocalFunction


def sqs_record(message: dict[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": message.get("Attributes", {}),
        "messageAttributes": message.get("MessageAttributes", {}),
        "md5OfBody": hashlib.md5(message["Body"].encode()).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


class SqsPoller(threading.Thread):
    def __init__(
        self, sqs: Any, queue_url: str, queue_arn: str, function: LocalFunction, batch_size: int, region: str
    ) -> None:
        super().__init__(daemon=True)
        self.sqs, self.queue_url, self.queue_arn = sqs, queue_url, queue_arn
        self.function, self.batch_size, self.region = function, batch_size, region
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                self.poll_once()
            except Exception as exc:  # a poller never dies: it logs and goes on, as the real mapping does
                if self.stopped.is_set():  # the stack is stopping: moto may be gone already
                    return
                print(f"[sqs poller {self.function.spec.logical_id}] {type(exc).__name__}: {exc}", flush=True)
                self.stopped.wait(1)

    def poll_once(self) -> None:
        messages = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=min(10, self.batch_size),
            WaitTimeSeconds=20,  # the longest long poll, as Lambda's mapping uses: an idle queue costs no CPU
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            return
        event = {"Records": [sqs_record(m, self.queue_arn, self.region) for m in messages]}
        try:
            result = self.function.invoke(event).result(timeout=self.function.spec.timeout + 5)
        except Exception as exc:  # the invocation failed or its container died: the batch comes back later
            if self.stopped.is_set():  # ended by the stack's stop
                return
            cause = getattr(exc, "__cause__", None)
            print(f"[sqs poller {self.function.spec.logical_id}] invocation failed: {exc!r}\n{cause or ''}", flush=True)
            return
        failed = {item["itemIdentifier"] for item in (result or {}).get("batchItemFailures", [])}
        done = [m for m in messages if m["MessageId"] not in failed]
        if done:
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)],
            )


_RATE = re.compile(r"^rate\((\d+)\s+(minutes?|hours?|days?)\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


def rate_seconds(expression: str) -> float | None:
    """The period of an EventBridge `rate(...)` expression; None for anything else (cron rules are not run locally)."""
    match = _RATE.match(expression.strip())
    return int(match[1]) * _UNIT_SECONDS[match[2].rstrip("s")] if match else None


def scheduled_event(rule_arn: str, region: str) -> dict[str, Any]:
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [rule_arn],
        "detail": {},
    }


class ScheduledRule(threading.Thread):
    """Invokes its function once per period, the first time one period after the start; as the template's rules
    have no retries, a failed invocation waits for the next period."""

    def __init__(self, function: LocalFunction, period: float, region: str) -> None:
        super().__init__(daemon=True)
        self.function, self.period, self.region = function, period, region
        self.rule_arn = f"arn:aws:events:{region}:123456789012:rule/{function.spec.logical_id}-schedule"
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.period):
            try:
                self.function.invoke(scheduled_event(self.rule_arn, self.region)).result(
                    timeout=self.function.spec.timeout + 5
                )
            except Exception as exc:
                if not self.stopped.is_set():
                    print(f"[schedule {self.function.spec.logical_id}] invocation failed: {exc!r}", flush=True)
