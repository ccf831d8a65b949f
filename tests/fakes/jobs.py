"""v2 jobs in memory, with adapters/dynamo_jobs.py's conditional transitions: a job is started by one worker at a
time (or taken over once its worker's lease has passed), completed or requeued only by the attempt that holds it,
and failed at most once."""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable
from typing import Any

from segmind_proxy.domain.errors import Dependency
from segmind_proxy.domain.jobs import Job, JobStatus
from segmind_proxy.domain.ports import Clock
from tests.fakes.errors import Breakable, conditional_check_failed

UNFINISHED = (JobStatus.QUEUED, JobStatus.PROCESSING)


class FakeJobStore(Breakable):
    """A `JobStore`. Jobs are copied in and out, as they would be through DynamoDB."""

    dependency = Dependency.JOB_STORE

    def __init__(self, clock: Clock = time.time) -> None:
        super().__init__()
        self.jobs: dict[str, Job] = {}
        self._clock = clock
        self._lock = threading.Lock()

    def create(self, job: Job) -> Job:
        self._may_fail("create")
        with self._lock:
            if job.job_id in self.jobs:
                raise conditional_check_failed("PutItem")
            self.jobs[job.job_id] = copy.deepcopy(job)
        return job

    def get(self, job_id: str) -> Job | None:
        self._may_fail("get")
        with self._lock:
            job = self.jobs.get(job_id)
            return copy.deepcopy(job) if job else None

    def start(self, job: Job, lease_seconds: float) -> Job | None:
        self._may_fail("start")
        now = self._clock()
        return self._update(
            job.job_id,
            lambda stored: (
                stored.status is JobStatus.QUEUED
                or (stored.status is JobStatus.PROCESSING and stored.processing_until < now)
            ),
            status=JobStatus.PROCESSING,
            processing_until=now + lease_seconds,
            attempts=job.attempts + 1,  # the attempt counted from the job as the worker read it
        )

    def requeue(self, job_id: str, attempt: int) -> Job | None:
        self._may_fail("requeue")
        return self._update(job_id, _held_by(attempt), status=JobStatus.QUEUED, processing_until=0.0)

    def hold(self, job_id: str, reservation: dict[str, Any] | None) -> None:
        self._may_fail("hold")
        with self._lock:
            if job_id in self.jobs:
                self.jobs[job_id].reservation = copy.deepcopy(reservation)

    def complete(self, job_id: str, result: dict[str, Any], attempt: int) -> Job | None:
        self._may_fail("complete")
        return self._update(job_id, _held_by(attempt), status=JobStatus.COMPLETED, result=copy.deepcopy(result))

    def fail(self, job_id: str, error: str) -> Job | None:
        self._may_fail("fail")
        return self._update(job_id, lambda stored: stored.status in UNFINISHED, status=JobStatus.FAILED, error=error)

    def record_webhook(self, job_id: str, outcome: dict[str, Any]) -> None:
        self._may_fail("record_webhook")
        with self._lock:
            if job_id in self.jobs:
                self.jobs[job_id].webhook = copy.deepcopy(outcome)

    def _update(self, job_id: str, condition: Callable[[Job], bool], **changes: Any) -> Job | None:
        with self._lock:
            stored = self.jobs.get(job_id)
            if stored is None or not condition(stored):
                return None
            for name, value in changes.items():
                setattr(stored, name, value)
            stored.updated_at = self._clock()
            return copy.deepcopy(stored)


def _held_by(attempt: int) -> Callable[[Job], bool]:
    return lambda stored: stored.status is JobStatus.PROCESSING and stored.attempts == attempt


class FakeJobQueue(Breakable):
    """A `JobQueue`: what was sent, in order, and which messages were put off."""

    dependency = Dependency.JOB_QUEUE

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[str] = []
        self.put_off: list[tuple[str, int]] = []  # (receipt, seconds)

    def send(self, job_id: str) -> None:
        self._may_fail("send")
        self.sent.append(job_id)

    def retry_after(self, receipt: str, seconds: int) -> None:
        self._may_fail("retry_after")
        self.put_off.append((receipt, seconds))
