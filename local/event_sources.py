"""Lambda's SQS event source mapping, locally: pollers receive from the queue (moto), invoke the function with an SQS
event, delete what succeeded and leave failures (and crashes) to be delivered again after the visibility timeout;
moto's redrive policy moves a message to the dead-letter queue after maxReceiveCount."""

from __future__ import annotations

import hashlib
import threading
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
