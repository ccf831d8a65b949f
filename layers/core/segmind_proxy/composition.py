"""The container's long-lived objects, built on first use and reused across invocations."""

from __future__ import annotations

from functools import cache

from segmind_proxy.adapters.after_response import AFTER_RESPONSE
from segmind_proxy.adapters.dynamo_jobs import JobStore
from segmind_proxy.adapters.dynamo_leases import LeaseStore
from segmind_proxy.adapters.dynamo_tenants import TenantRegistry
from segmind_proxy.adapters.dynamo_usage import Meter
from segmind_proxy.adapters.s3_images import ImageStore, renewal_age
from segmind_proxy.adapters.segmind import SegmindClient
from segmind_proxy.adapters.upstream_key import get_segmind_key
from segmind_proxy.flows.generate import GenerationService
from segmind_proxy.observability import record_upstream_error
from segmind_proxy.settings import get_settings


@cache
def generation_service() -> GenerationService:
    settings = get_settings()
    upstream = SegmindClient(
        settings.segmind_base_url,
        get_segmind_key,
        max_attempts=settings.upstream_max_attempts,
        connect_timeout=settings.upstream_connect_timeout_seconds,
        on_attempt_error=record_upstream_error,
    )
    leases = LeaseStore(settings.jobs_table) if settings.jobs_table else None
    # What is handed out for a cached set must outlive its renewal: a URL, or a job record that presigns again.
    outlive = max(settings.presigned_url_ttl_seconds, settings.job_retention_hours * 3600)
    store = ImageStore(settings.cache_bucket, renew_after_seconds=renewal_age(settings.cache_expiration_days, outlive))
    return GenerationService(store, upstream, leases, later=AFTER_RESPONSE)


@cache
def tenant_registry() -> TenantRegistry | None:
    """None when TENANTS_TABLE is unset: tenancy off, the cache namespaced by API key id alone."""
    table = get_settings().tenants_table
    return TenantRegistry(table) if table else None


@cache
def meter() -> Meter | None:
    table = get_settings().tenants_table
    return Meter(table) if table else None


@cache
def job_store() -> JobStore | None:
    table = get_settings().jobs_table
    return JobStore(table) if table else None
