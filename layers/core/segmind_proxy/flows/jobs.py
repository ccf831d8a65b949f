"""v2 jobs on the submitting side: submit answers at once with a job (completed at once on a cache hit, otherwise
queued for the worker, see `job_runner`); its status and images are read back later. Jobs belong to their
namespace (tenant): another tenant's id is not found."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from segmind_proxy.domain.cache_policy import CachePolicy
from segmind_proxy.domain.errors import Dependency, Expired, NotFound, Outage, Unavailable
from segmind_proxy.domain.images import result_of, stored_set
from segmind_proxy.domain.jobs import Job, JobStatus
from segmind_proxy.domain.ports import Idempotency, JobQueue, JobStore
from segmind_proxy.domain.pricing import estimate
from segmind_proxy.domain.request import Txt2ImgRequest
from segmind_proxy.flows.billing import TenantBilling
from segmind_proxy.flows.generate import GenerationService
from segmind_proxy.flows.idempotent import Keyed
from segmind_proxy.flows.scope import RequestScope
from segmind_proxy.observability import MetricUnit, logger, metrics

MAX_JOB_ID_LENGTH = 64  # ids are 32 hex digits: a longer one is looked up nowhere and echoed no further


@dataclass(frozen=True)
class Submission:
    """How a job was asked for: its Cache-Control, its webhook (already checked) and its Idempotency-Key."""

    policy: CachePolicy
    webhook_url: str | None = None
    keyed: Keyed | None = None


@dataclass
class AsyncJobs:
    service: GenerationService
    jobs: JobStore
    queue: JobQueue
    idempotency: Idempotency | None
    retention_hours: int
    url_ttl: int

    def submit(self, request: Txt2ImgRequest, scope: RequestScope, submission: Submission) -> tuple[Job, bool]:
        """The job, recorded (and queued unless a hit completed it), once per Idempotency-Key; and whether it is the
        key's first submit replayed."""
        if submission.keyed is None or self.idempotency is None:
            return self._submit(request, scope, submission), False
        keyed = submission.keyed
        outcome, replayed = self.idempotency.run_once(
            keyed.key,
            (scope.namespace, keyed.route),
            keyed.body,
            lambda: _submitted(self._submit(request, scope, submission)),
            keyed.context,
        )
        job = Job(
            job_id=outcome["request_id"], namespace=scope.namespace, request={}, status=JobStatus(outcome["status"])
        )
        return job, replayed

    def _submit(self, request: Txt2ImgRequest, scope: RequestScope, submission: Submission) -> Job:
        job_id, policy, billing = scope.owner, submission.policy, scope.billing
        job = Job(
            job_id=job_id,
            namespace=scope.namespace,
            tenant_id=scope.caller.tenant.tenant_id if scope.caller.tenant else None,
            request=request.model_dump(),
            model=request.slug,
            estimate=estimate(request),
            webhook_url=submission.webhook_url,
            expires_at=int(time.time() + self.retention_hours * 3600),
            cache={"read": policy.read, "write": policy.write},
        )
        hit = self.service.lookup(request, scope, by_url=True) if policy.reads(request) else None
        if hit is not None:
            # A hit at submit completes the job at once, with no upstream call; the answer shows no budget figures,
            # so counting the hit can follow it.
            self.service.count_hit(billing, answer_shows_usage=False)
            job.status, job.result = JobStatus.COMPLETED, result_of(hit)
        else:
            policy.check_may_generate(request)  # before the job exists: nothing to clean up
            billing.reserve()
            if isinstance(billing, TenantBilling) and billing.reservation is not None:
                job.reservation = vars(billing.reservation)
        self._record(job, scope)
        metrics.add_metric(name="JobsSubmitted", unit=MetricUnit.Count, value=1)
        return job

    def _record(self, job: Job, scope: RequestScope) -> None:
        """Into the job store, then the queue (a webhook is sent by the worker even for a job done at submit)."""
        try:
            self.jobs.create(job)
        except Outage:
            logger.exception("Could not record job")
            scope.billing.release()  # no job holds the reservation: without this it would stay committed all month
            raise Unavailable(
                Dependency.JOB_STORE, "The job store is unavailable; nothing was charged, retry shortly"
            ) from None
        if job.status is not JobStatus.QUEUED and not job.webhook_url:
            return
        try:
            self.queue.send(job.job_id)
        except Outage:
            logger.exception("Could not enqueue job")
            scope.billing.release()  # first: the job store may be failing too
            try:
                self.jobs.fail(job.job_id, "could not be queued")
            except Outage:
                logger.warning("Could not mark the unqueued job failed; it expires unrun", exc_info=True)
            raise Unavailable(
                Dependency.JOB_QUEUE, "The job queue is unavailable; nothing was charged, retry shortly"
            ) from None

    def find(self, job_id: str, namespace: str) -> Job:
        job = self.jobs.get(job_id) if job_id.isalnum() and len(job_id) <= MAX_JOB_ID_LENGTH else None
        if job is None or job.namespace != namespace or (job.expires_at and job.expires_at < time.time()):
            shown = job_id if len(job_id) <= MAX_JOB_ID_LENGTH else job_id[:MAX_JOB_ID_LENGTH] + "..."
            raise NotFound(f"No request with id '{shown}'")
        return job

    def image_links(self, job: Job) -> list[str]:
        """Presigned URLs of a completed job's images, or an error if they have expired from the store."""
        assert job.result is not None
        stored = stored_set(job.result)
        try:
            present = self.service.holds(stored)
        except Outage:
            logger.warning("Could not check a job's images; presigning them anyway", exc_info=True)
            present = True
        if not present:  # a job kept longer than its images (a day for no-store, or an unrenewed cache expiry)
            raise Expired(f"The images of request '{job.job_id}' have expired from storage; submit it again")
        return self.service.presign(stored, self.url_ttl)


def _submitted(job: Job) -> dict[str, Any]:
    """What an Idempotency-Key remembers of a submit: enough to answer a retry the same."""
    return {"request_id": job.job_id, "status": job.status.value}
