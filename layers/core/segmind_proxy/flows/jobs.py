"""Segmind's v2 protocol on the API side: submit answers at once with a job; status and result read it back.
Jobs belong to their namespace (tenant): another tenant's id is a 404."""

from __future__ import annotations

import json
import time
from concurrent.futures import Future
from typing import Any

from segmind_proxy.domain.cache_policy import CachePolicy
from segmind_proxy.domain.errors import Dependency, Expired, NotFound, Outage, Unavailable
from segmind_proxy.domain.images import ImageResult, result_of, stored_set
from segmind_proxy.domain.jobs import Job, JobStatus
from segmind_proxy.domain.ports import JobStore
from segmind_proxy.domain.request import Txt2ImgRequest
from segmind_proxy.flows.billing import Billing, NoBilling, TenantBilling
from segmind_proxy.flows.generate import GenerationService
from segmind_proxy.observability import MetricUnit, logger, metrics


def urls(base_url: str, job_id: str) -> dict[str, str]:
    return {
        "poll_url": f"{base_url}/v2/requests/{job_id}/status",
        "status_url": f"{base_url}/v2/requests/{job_id}/status",
        "response_url": f"{base_url}/v2/requests/{job_id}",
    }


def submit(
    request: Txt2ImgRequest,
    *,
    job_id: str,
    namespace: str,
    tenant_id: str | None,
    policy: CachePolicy,
    billing: Billing,
    estimate: float,
    service: GenerationService,
    jobs: JobStore,
    queue: Any,
    queue_url: str,
    base_url: str,
    webhook_url: str | None,
    retention_hours: int,
    prefetched: Future[ImageResult | None] | None = None,
) -> dict[str, Any]:
    job = Job(
        job_id=job_id,
        namespace=namespace,
        tenant_id=tenant_id,
        request=request.model_dump(),
        estimate=estimate,
        webhook_url=webhook_url,
        expires_at=int(time.time() + retention_hours * 3600),
        cache={"read": policy.read, "write": policy.write},
    )
    hit = service.lookup(request, namespace, by_url=True, prefetched=prefetched) if policy.reads(request) else None
    if hit is not None:
        # A hit at submit completes the job at once, with no upstream call; the answer shows no budget figures, so
        # counting the hit can follow it.
        billing.on_hit(later=service.later, answer_shows_usage=False)
        job.status, job.result = JobStatus.COMPLETED, result_of(hit)
    else:
        policy.check_may_generate(request)  # before the job exists: nothing to clean up
        billing.reserve()
        if isinstance(billing, TenantBilling) and billing.reservation is not None:
            job.reservation = vars(billing.reservation)
    try:
        jobs.create(job)
    except Outage:
        logger.exception("Could not record job")
        billing.release()  # no job holds the reservation: without this it would stay committed all month
        raise Unavailable(
            Dependency.JOB_STORE, "The job store is unavailable; nothing was charged, retry shortly"
        ) from None
    if job.status is JobStatus.QUEUED or webhook_url:
        try:
            queue.send_message(QueueUrl=queue_url, MessageBody=json.dumps({"job_id": job.job_id}))
        except Outage:
            logger.exception("Could not enqueue job")
            billing.release()  # first: the job store may be failing too
            try:
                jobs.fail(job.job_id, "could not be queued")
            except Outage:
                logger.warning("Could not mark the unqueued job failed; it expires unrun", exc_info=True)
            raise Unavailable(
                Dependency.JOB_QUEUE, "The job queue is unavailable; nothing was charged, retry shortly"
            ) from None
    metrics.add_metric(name="JobsSubmitted", unit=MetricUnit.Count, value=1)
    return {"request_id": job.job_id, "status": job.status.value, **urls(base_url, job.job_id)}


MAX_JOB_ID_LENGTH = 64  # ids are 32 hex digits: a longer one is looked up nowhere and echoed no further


def find(jobs: JobStore, job_id: str, namespace: str) -> Job:
    job = jobs.get(job_id) if job_id.isalnum() and len(job_id) <= MAX_JOB_ID_LENGTH else None
    if job is None or job.namespace != namespace or (job.expires_at and job.expires_at < time.time()):
        shown = job_id if len(job_id) <= MAX_JOB_ID_LENGTH else job_id[:MAX_JOB_ID_LENGTH] + "..."
        raise NotFound(f"No request with id '{shown}'")
    return job


def status_body(job: Job) -> tuple[int, dict[str, Any]]:
    body: dict[str, Any] = {"request_id": job.job_id, "status": job.status.value}
    if job.status is JobStatus.FAILED:
        body["error"] = job.error or "failed"
        return 422, body
    return 200, body


def result_body(job: Job, service: GenerationService, url_ttl: int) -> tuple[int, dict[str, Any]]:
    status, body = status_body(job)
    if job.status is not JobStatus.COMPLETED or not job.result:
        return status, body
    stored = stored_set(job.result)
    try:
        present = service.store.head(stored) is not None
    except Outage:
        logger.warning("Could not check a job's images; presigning them anyway", exc_info=True)
        present = True
    if not present:  # a job kept longer than its images (a day for no-store, or an unrenewed cache expiry)
        raise Expired(f"The images of request '{job.job_id}' have expired from storage; submit it again")
    links = service.store.presign(stored, url_ttl)
    body |= {
        "output": links[0] if len(links) == 1 else links,
        "outputs": links,
        "expires_in": url_ttl,
        "metrics": {
            "cache": job.result.get("cache"),
            "seed": job.result.get("seed"),
            "images": len(links),
            "content_type": job.result.get("content_type"),
            "queued_seconds": round(job.updated_at - job.created_at, 3),
        },
    }
    return 200, body


__all__ = ["NoBilling", "find", "result_body", "status_body", "submit"]
