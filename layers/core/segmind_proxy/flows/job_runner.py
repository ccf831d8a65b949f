"""The worker's side of v2 jobs: run one job (at least once delivery from SQS), or give up on a dead-lettered one.

Never charged twice: the held reservation is settled only by the worker whose PROCESSING -> COMPLETED transition
succeeds. Never stuck: a crashed worker's job is taken over on redelivery once its lease passes, and a job whose
deliveries run out lands in the dead-letter queue, where it is marked FAILED and its reservation released."""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, field, replace
from typing import Any

from segmind_proxy.domain.cache_policy import CachePolicy
from segmind_proxy.domain.catalog import Catalog, bundled_catalog
from segmind_proxy.domain.errors import Dependency, DomainError, Unavailable
from segmind_proxy.domain.images import result_of, stored_set
from segmind_proxy.domain.jobs import TERMINAL, Job
from segmind_proxy.domain.ports import JobQueue, JobStore, TenantDirectory, UsageLedger, Webhooks
from segmind_proxy.domain.request import DEFAULT_SLUG, Txt2ImgRequest, validated
from segmind_proxy.domain.usage import Caller, Reservation
from segmind_proxy.flows.billing import JobBilling, NoBilling, TenantBilling
from segmind_proxy.flows.generate import GenerationService
from segmind_proxy.flows.scope import Plan, RequestScope
from segmind_proxy.observability import MetricUnit, logger, metrics


class RetryLater(Exception):
    """Leave the message for SQS to deliver again after `delay` seconds."""

    def __init__(self, delay: int, reason: str) -> None:
        super().__init__(reason)
        self.delay = delay


def _resumable(request: Txt2ImgRequest, policy: CachePolicy, job_id: str) -> tuple[Txt2ImgRequest, CachePolicy]:
    """A random seed (-1) is drawn here, once per job, from its id: every attempt then asks Segmind for the same
    images and stores them under the same key, so a redelivery finds what a dead attempt made instead of paying
    again. The seed is still random to the client, and its images are still never served from the cache."""
    if not request.random_seed:
        return request, policy
    seed = int.from_bytes(hashlib.sha256(f"seed#{job_id}".encode()).digest()[:4], "big")
    return request.with_seed(seed), replace(policy, read=False)


@dataclass
class JobRunner:
    jobs: JobStore
    service: GenerationService
    registry: TenantDirectory | None
    meter: UsageLedger | None
    max_attempts: int
    url_ttl: int
    webhooks: Webhooks
    catalog: Catalog = field(default_factory=bundled_catalog)
    queue: JobQueue | None = None  # puts off a job to retry, rather than wait for the queue's visibility timeout

    def run(self, job_id: str, receive_count: int, deadline: float, receipt: str | None = None) -> None:
        """`deadline` on the monotonic clock. A job to retry is put off for its delay on the queue (`receipt`
        names its message) and RetryLater raised: failing the message has SQS deliver it again, after that delay."""
        try:
            self._run(job_id, receive_count, deadline)
        except RetryLater as retry:
            if self.queue is not None and receipt is not None:
                self.queue.retry_after(receipt, retry.delay)
            raise

    def _run(self, job_id: str, receive_count: int, deadline: float) -> None:
        job = self.jobs.get(job_id)
        if job is None:
            logger.warning("Job not found (expired?)", extra={"job_id": job_id})
            return
        if job.status in TERMINAL:
            self._notify(job)
            return
        started = self.jobs.start(job, lease_seconds=max(1.0, deadline - time.monotonic()) + 5)
        if started is None:
            current = self.jobs.get(job_id)
            if current is None or current.status in TERMINAL:
                return
            # Another worker holds it, or held it and died: look again once its lease has passed.
            raise RetryLater(
                max(1, math.ceil(current.processing_until - time.time()) + 1), "job held by another worker"
            )
        tenant = self.registry.get(started.tenant_id) if self.registry and started.tenant_id else None
        model = self.catalog.find(started.model or DEFAULT_SLUG)  # jobs from before the catalog: SD 3.5 Turbo's
        if model is None:  # its model's file was removed after the job was submitted
            self._finish_failed(job_id, f"The model '{started.model}' is no longer served by this gateway")
            return
        request, policy = _resumable(
            validated(model, started.request),
            CachePolicy(**(started.cache or {})),  # no-cache and no-store hold for the worker too
            job_id,
        )
        billing = JobBilling(self.meter, tenant, started, self.jobs, request.count) if tenant and self.meter else None
        try:
            scope = RequestScope(Caller(tenant, started.namespace), f"job-{job_id}", deadline, billing or NoBilling())
            plan = Plan(policy, by_url=True, must_store=True, resumable=True)
            result = self.service.generate(request, scope, plan)
            if result.stored is None:
                raise Unavailable(Dependency.STORAGE, "the images could not be stored")
        except DomainError as error:
            if billing:
                billing.release()
            retry = error.retryable and receive_count < self.max_attempts
            if retry:
                self.jobs.requeue(job_id, started.attempts)
                delay = min(900, 10 * 2**receive_count)
                logger.warning(
                    "Job attempt failed; SQS delivers it again",
                    extra={"kind": error.kind, "error": error.message, "attempt": receive_count, "retry_in_s": delay},
                )
                raise RetryLater(delay, error.message) from None
            self._finish_failed(job_id, error.message)
            return
        completed = self.jobs.complete(job_id, result_of(result), started.attempts)
        if completed is not None:
            if billing:
                billing.finalize()
            metrics.add_metric(name="JobsCompleted", unit=MetricUnit.Count, value=1)
            self._notify(completed)

    def give_up(self, job_id: str) -> None:
        """The job's deliveries ran out (dead-letter queue): FAILED, reservation released, webhook sent."""
        job = self.jobs.get(job_id)
        if job is None:
            return
        if job.status not in TERMINAL:
            self._finish_failed(job_id, f"gave up after {self.max_attempts} attempts")
        else:
            self._notify(job)

    def _finish_failed(self, job_id: str, error: str) -> None:
        failed = self.jobs.fail(job_id, error)
        if failed is None:
            return
        if failed.reservation and self.meter:
            reservation = Reservation(**failed.reservation)
            TenantBilling.best_effort(lambda: self.meter.release(reservation))
        metrics.add_metric(name="JobsFailed", unit=MetricUnit.Count, value=1)
        self._notify(failed)

    def _notify(self, job: Job) -> None:
        if not job.webhook_url or job.webhook is not None:
            return
        tenant = self.registry.get(job.tenant_id) if self.registry and job.tenant_id else None
        if tenant is None or not tenant.webhook_secret:
            self.jobs.record_webhook(job.job_id, {"delivered": False, "error": "no signing secret for this tenant"})
            return
        payload: dict[str, Any] = {"request_id": job.job_id, "status": job.status.value}
        if job.error:
            payload["error"] = job.error
        if job.result:
            links = self.service.presign(stored_set(job.result), self.url_ttl)
            payload |= {"output": links[0] if len(links) == 1 else links, "outputs": links, "expires_in": self.url_ttl}
        outcome = self.webhooks.deliver(job.webhook_url, payload, tenant.webhook_secret)
        metrics.add_metric(
            name="WebhooksDelivered" if outcome["delivered"] else "WebhooksFailed", unit=MetricUnit.Count, value=1
        )
        self.jobs.record_webhook(job.job_id, outcome)
