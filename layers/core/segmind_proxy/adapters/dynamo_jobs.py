"""v2 job records in DynamoDB (JobsTable, with TTL). Status changes are conditional updates, so concurrent or
repeated deliveries of one job agree on who does what, and a crashed worker's job can be taken over."""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

from segmind_proxy.adapters.aws_clients import DynamoTable, condition_failed, raising_outages
from segmind_proxy.domain.errors import Dependency
from segmind_proxy.domain.jobs import Job, JobStatus


def job_item(job: Job) -> dict[str, Any]:
    item = {k: v for k, v in asdict(job).items() if v is not None}
    item["status"] = job.status.value
    # The request as JSON text: a model's number may be a float DynamoDB cannot hold (2.5e-294 underflows its
    # numbers), and JSON gives back exactly the value validated.
    item["request"] = json.dumps(job.request, separators=(",", ":"))
    return {"pk": f"JOB#{job.job_id}", **_to_dynamo(item)}


def job_from_item(item: dict[str, Any]) -> Job:
    data = _from_dynamo({k: v for k, v in item.items() if k != "pk"})
    data["status"] = JobStatus(data["status"])
    if isinstance(data.get("request"), str):  # JSON text; jobs written before hold a map, read as it is
        data["request"] = json.loads(data["request"])
    return Job(**{k: v for k, v in data.items() if k in Job.__dataclass_fields__})


def _to_dynamo(value: Any) -> Any:
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, dict):
        return {k: _to_dynamo(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_to_dynamo(v) for v in value]
    return value


def _from_dynamo(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _from_dynamo(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_dynamo(v) for v in value]
    return value


@raising_outages(Dependency.JOB_STORE)
class JobStore(DynamoTable):
    def create(self, job: Job) -> Job:
        self.table.put_item(Item=job_item(job), ConditionExpression="attribute_not_exists(pk)")
        return job

    def get(self, job_id: str) -> Job | None:
        item = self.table.get_item(Key={"pk": f"JOB#{job_id}"}, ConsistentRead=True).get("Item")
        return job_from_item(item) if item else None

    def _update(
        self, job_id: str, sets: dict[str, Any], condition: str, values: dict[str, Any] | None = None
    ) -> Job | None:
        sets = {**sets, "updated_at": self._clock()}
        update = "SET " + ", ".join(f"#{k} = :{k}" for k in sets)
        try:
            result = self.table.update_item(
                Key={"pk": f"JOB#{job_id}"},
                UpdateExpression=update,
                ConditionExpression=condition,
                # Every attribute is named as #name in both expressions, so no reserved word can break them.
                ExpressionAttributeNames={f"#{name}": name for name in re.findall(r"#(\w+)", update + condition)},
                ExpressionAttributeValues={
                    **{f":{k}": _to_dynamo(v) for k, v in sets.items()},
                    **_to_dynamo(values or {}),
                },
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if condition_failed(exc):
                return None
            raise
        return job_from_item(result["Attributes"])

    def start(self, job: Job, lease_seconds: float) -> Job | None:
        """Claim a queued job, or take over one whose worker's time ran out. None: finished, or someone has it."""
        now = self._clock()
        return self._update(
            job.job_id,
            {
                "status": JobStatus.PROCESSING.value,
                "processing_until": now + lease_seconds,
                "attempts": job.attempts + 1,
            },
            "#status = :queued OR (#status = :processing AND processing_until < :now)",
            {":queued": JobStatus.QUEUED.value, ":processing": JobStatus.PROCESSING.value, ":now": now},
        )

    def requeue(self, job_id: str, attempt: int) -> Job | None:
        """PROCESSING -> QUEUED, by the attempt that holds the job only."""
        return self._update(
            job_id,
            {"status": JobStatus.QUEUED.value, "processing_until": 0.0},
            "#status = :processing AND #attempts = :attempt",
            {":processing": JobStatus.PROCESSING.value, ":attempt": attempt},
        )

    def hold(self, job_id: str, reservation: dict[str, Any] | None) -> None:
        """Record the budget reservation the job holds (None: none held). A job that is gone (its record expired)
        is left gone: an update alone would create an item holding nothing but the reservation; the ledger's own
        record of the reservation is what the sweeper gives back."""
        change: dict[str, Any] = (
            {"UpdateExpression": "REMOVE reservation"}
            if reservation is None
            else {
                "UpdateExpression": "SET reservation = :r",
                "ExpressionAttributeValues": {":r": _to_dynamo(reservation)},
            }
        )
        try:
            self.table.update_item(Key={"pk": f"JOB#{job_id}"}, ConditionExpression="attribute_exists(pk)", **change)
        except ClientError as exc:
            if not condition_failed(exc):
                raise

    def complete(self, job_id: str, result: dict[str, Any], attempt: int) -> Job | None:
        """PROCESSING -> COMPLETED exactly once, by the attempt that holds the job (the caller that gets the Job
        settles the bill). An attempt taken over after its lease ran out can no longer complete or requeue it."""
        return self._update(
            job_id,
            {"status": JobStatus.COMPLETED.value, "result": result},
            "#status = :processing AND #attempts = :attempt",
            {":processing": JobStatus.PROCESSING.value, ":attempt": attempt},
        )

    def fail(self, job_id: str, error: str) -> Job | None:
        """Any unfinished job -> FAILED exactly once."""
        return self._update(
            job_id,
            {"status": JobStatus.FAILED.value, "error": error},
            "#status IN (:queued, :processing)",
            {":queued": JobStatus.QUEUED.value, ":processing": JobStatus.PROCESSING.value},
        )

    def record_webhook(self, job_id: str, outcome: dict[str, Any]) -> None:
        self.table.update_item(
            Key={"pk": f"JOB#{job_id}"},
            UpdateExpression="SET webhook = :w",
            ExpressionAttributeValues={":w": _to_dynamo(outcome)},
        )
