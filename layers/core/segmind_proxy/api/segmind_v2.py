"""Segmind's v2 routes, HTTP-shaped but framework-free: submit (validated like v1), status and result."""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import Future
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from segmind_proxy.adapters.aws_clients import job_queue
from segmind_proxy.adapters.idempotency import idempotency_key, run_once
from segmind_proxy.adapters.webhooks import HEADER as WEBHOOK_HEADER
from segmind_proxy.adapters.webhooks import check_url
from segmind_proxy.api.segmind_v1 import validate
from segmind_proxy.domain.cache_policy import CachePolicy
from segmind_proxy.domain.errors import NotFound, RequestInvalid
from segmind_proxy.domain.images import ImageResult
from segmind_proxy.domain.jobs import Job
from segmind_proxy.domain.ports import JobStore, UsageLedger
from segmind_proxy.domain.tenants import Tenant
from segmind_proxy.domain.usage import Hold
from segmind_proxy.flows.billing import billing_for, counting_rejections
from segmind_proxy.flows.generate import GenerationService
from segmind_proxy.flows.jobs import find, result_body, status_body, submit
from segmind_proxy.settings import Settings


def _jobs(jobs: JobStore | None) -> JobStore:
    if jobs is None:
        raise NotFound("Async (v2) generation is not enabled on this gateway")
    return jobs


def handle_submit(
    *,
    body: bytes | None,
    headers: Mapping[str, str],
    api_key_id: str | None,
    base_url: str,
    service: GenerationService,
    jobs: JobStore | None,
    settings: Settings,
    tenant: Tenant | None = None,
    meter: UsageLedger | None = None,
    context: LambdaContext | None = None,
    prefetched: Future[ImageResult | None] | None = None,
) -> dict[str, Any]:
    """`prefetched`: this request's cache read (by URL), started by `prefetch_cache_read` in the same namespace."""
    store = _jobs(jobs)
    with counting_rejections(tenant, meter, service.later):
        request, _ = validate(body, headers, settings)
        key = idempotency_key(headers)
        webhook = headers.get(WEBHOOK_HEADER)
        if webhook is not None:
            check_url(webhook, targets=settings.webhook_targets)
            if tenant is None:
                raise RequestInvalid("Webhooks need a tenant key (they are signed with the tenant's secret)")
    job_id = Job.new_id()
    # The job holds the reservation, across SQS deliveries: the sweeper asks the job store before taking it back.
    estimate, billing, namespace = billing_for(request, tenant, meter, api_key_id, hold=Hold.for_job(job_id))

    def produce() -> dict[str, Any]:
        return submit(
            request,
            job_id=job_id,
            namespace=namespace,
            tenant_id=tenant.tenant_id if tenant else None,
            policy=CachePolicy.from_header(headers.get("cache-control")),
            billing=billing,
            estimate=estimate,
            service=service,
            jobs=store,
            queue=job_queue(),
            queue_url=settings.jobs_queue_url,
            base_url=base_url,
            webhook_url=webhook,
            retention_hours=settings.job_retention_hours,
            prefetched=prefetched,
        )

    # A 402 (over budget) is refused before any cost, as a 400 is.
    with counting_rejections(tenant, meter, service.later):
        if key is None:
            return produce()
        answer, _ = run_once(key=key, namespace=namespace, route="v2", body=body, produce=produce, context=context)
    return answer


def handle_status(job_id: str, namespace: str, jobs: JobStore | None) -> tuple[int, dict[str, Any]]:
    return status_body(find(_jobs(jobs), job_id, namespace))


def handle_result(
    job_id: str, namespace: str, jobs: JobStore | None, service: GenerationService, settings: Settings
) -> tuple[int, dict[str, Any]]:
    return result_body(find(_jobs(jobs), job_id, namespace), service, settings.presigned_url_ttl_seconds)
