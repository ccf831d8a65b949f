"""v2 jobs: a submitted generation, run later by the worker, with its status, result and webhook."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

MAX_WEBHOOK_URL_LENGTH = 2048  # also the OpenAPI spec's


class JobStatus(StrEnum):
    QUEUED = "QUEUED"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


TERMINAL = frozenset({JobStatus.COMPLETED, JobStatus.FAILED})


@dataclass
class Job:
    job_id: str
    namespace: str  # the tenant (or key) the job belongs to: another namespace's id is a 404
    request: dict[str, Any]  # the validated request fields
    model: str = ""  # the catalog model's slug; empty on jobs submitted before the catalog: Stable Diffusion 3.5 Turbo
    status: JobStatus = JobStatus.QUEUED
    tenant_id: str | None = None
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    expires_at: int = 0  # DynamoDB TTL (epoch seconds)
    attempts: int = 0
    processing_until: float = 0.0  # a PROCESSING job whose worker passed this time is taken over
    estimate: float = 0.0
    reservation: dict[str, Any] | None = None  # held budget (`usage.Reservation` fields) until settled/released
    result: dict[str, Any] | None = None  # prefix, count, image_format, content_type, seed, cache
    error: str | None = None
    webhook_url: str | None = None
    webhook: dict[str, Any] | None = None  # delivery outcome
    cache: dict[str, bool] | None = None  # the submit's Cache-Control (read, write); None: both (older jobs)

    @staticmethod
    def new_id() -> str:
        return uuid.uuid4().hex
