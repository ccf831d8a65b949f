"""Segmind's v2 routes, HTTP-shaped but framework-free: submit (validated like v1), status and result."""

from __future__ import annotations

from typing import Any

from segmind_proxy.api.headers import WEBHOOK_HEADER, idempotency_key
from segmind_proxy.api.segmind_v1 import parse_body
from segmind_proxy.api.services import Incoming, Services
from segmind_proxy.api.synchronous import admit
from segmind_proxy.domain.cache_policy import CachePolicy
from segmind_proxy.domain.errors import NotFound, RequestInvalid
from segmind_proxy.domain.jobs import Job, JobStatus
from segmind_proxy.domain.usage import Caller, Hold
from segmind_proxy.flows.billing import billing_for, counting_rejections
from segmind_proxy.flows.idempotent import Keyed
from segmind_proxy.flows.jobs import AsyncJobs, Submission
from segmind_proxy.flows.scope import RequestScope


def _jobs(services: Services) -> AsyncJobs:
    if services.jobs is None:
        raise NotFound("Async (v2) generation is not enabled on this gateway")
    return services.jobs


def urls(base_url: str, job_id: str) -> dict[str, str]:
    return {
        "poll_url": f"{base_url}/v2/requests/{job_id}/status",
        "status_url": f"{base_url}/v2/requests/{job_id}/status",
        "response_url": f"{base_url}/v2/requests/{job_id}",
    }


def handle_submit(incoming: Incoming, caller: Caller, services: Services) -> tuple[dict[str, Any], bool]:
    """The submitted job's answer, and whether it replays an Idempotency-Key's first submit."""
    jobs, headers = _jobs(services), incoming.headers
    with counting_rejections(caller.tenant, services.ledger, services.later):
        request = (
            incoming.parsed.request if incoming.parsed else parse_body(incoming.body, headers, services, incoming.model)
        )
        key = idempotency_key(headers)
        webhook = headers.get(WEBHOOK_HEADER)
        if webhook is not None and services.webhooks is not None:
            services.webhooks.check(webhook)
            if caller.tenant is None:
                raise RequestInvalid("Webhooks need a tenant key (they are signed with the tenant's secret)")
    admit(request, caller, incoming, services)  # a refused prompt is refused at submit: no job, no charge
    job_id = Job.new_id()
    # The job holds the reservation, across SQS deliveries: the sweeper asks the job store before taking it back.
    billing = billing_for(request, caller, services.ledger, Hold.for_job(job_id))
    scope = RequestScope(caller, job_id, incoming.deadline, billing, incoming.prefetched)
    submission = Submission(
        CachePolicy.from_header(headers.get("cache-control")),
        webhook,
        Keyed(key, f"v2/{request.slug}", incoming.body, incoming.context) if key is not None else None,
    )
    # A 402 (over budget) is refused before any cost, as a 400 is.
    with counting_rejections(caller.tenant, services.ledger, services.later):
        job, replayed = jobs.submit(request, scope, submission)
    return {"request_id": job.job_id, "status": job.status.value, **urls(incoming.base_url, job.job_id)}, replayed


def handle_status(job_id: str, namespace: str, services: Services) -> tuple[int, dict[str, Any]]:
    return status_body(_jobs(services).find(job_id, namespace))


def handle_result(job_id: str, namespace: str, services: Services) -> tuple[int, dict[str, Any]]:
    jobs = _jobs(services)
    job = jobs.find(job_id, namespace)
    status, body = status_body(job)
    if job.status is not JobStatus.COMPLETED or not job.result:
        return status, body
    links = jobs.image_links(job)
    body |= {
        "output": links[0] if len(links) == 1 else links,
        "outputs": links,
        "expires_in": jobs.url_ttl,
        "metrics": {
            "cache": job.result.get("cache"),
            "seed": job.result.get("seed"),
            "images": len(links),
            "content_type": job.result.get("content_type"),
            "provenance": job.result.get("provenance", "none"),
            "queued_seconds": round(job.updated_at - job.created_at, 3),
        },
    }
    return 200, body


def status_body(job: Job) -> tuple[int, dict[str, Any]]:
    body: dict[str, Any] = {"request_id": job.job_id, "status": job.status.value}
    if job.status is JobStatus.FAILED:
        body["error"] = job.error or "failed"
        return 422, body
    return 200, body
