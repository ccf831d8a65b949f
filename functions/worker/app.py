"""Worker Lambda: runs v2 jobs from the jobs queue, and marks jobs from the dead-letter queue FAILED."""

import json
import time
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from snapshot_restore_py import register_after_restore, register_before_snapshot

from segmind_proxy.composition import after_restore, before_snapshot, job_runner
from segmind_proxy.observability import logger, metrics, tracer
from segmind_proxy.settings import get_settings

# Report failed records (retried by SQS) rather than fail the invocation when all of a batch fails.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
_context: dict[str, Any] = {}
# SnapStart's runtime hooks (docs/operations.md, "SnapStart"); Lambda runs them only for a version published with it on.
register_before_snapshot(before_snapshot, job_runner)
register_after_restore(after_restore)


@tracer.capture_method(capture_response=False)
def handle_record(record: SQSRecord) -> None:
    try:
        job_id = str(json.loads(record.body)["job_id"])
    except (ValueError, KeyError, TypeError):
        # Not a message this gateway sent: no attempt can succeed, so failing it would only redeliver it forever.
        logger.error("Dropped a queue message that names no job", extra={"message_id": record.message_id})
        return
    logger.append_keys(job_id=job_id)
    if record.event_source_arn == get_settings().jobs_dead_letter_arn:
        job_runner().give_up(job_id)
        return
    context: LambdaContext = _context["lambda"]
    deadline = time.monotonic() + context.get_remaining_time_in_millis() / 1000 - get_settings().deadline_margin_seconds
    receive_count = int(record.attributes.approximate_receive_count or 1)
    # A job to retry is put off on the queue for its delay, and its record failed (SQS delivers it again).
    job_runner().run(job_id, receive_count, deadline, record.receipt_handle)


@logger.inject_lambda_context(log_event=False, clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    _context["lambda"] = context
    return process_partial_response(event=event, record_handler=handle_record, processor=processor, context=context)
