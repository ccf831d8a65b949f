"""`GET /v1/usage`: the calling tenant's own figures for a month and what remains of its budget."""

from __future__ import annotations

from typing import Any

from segmind_proxy.api.schemas import UsageReport
from segmind_proxy.domain.ports import UsageLedger
from segmind_proxy.domain.tenants import Tenant
from segmind_proxy.domain.usage import current_month


def usage_report(meter: UsageLedger, tenant: Tenant, month: str | None = None) -> UsageReport:
    usage = meter.usage(tenant.tenant_id, month or current_month())
    budget: dict[str, Any] = {"credits": tenant.budget_credits, "images": tenant.budget_images}
    return UsageReport(
        tenant_id=tenant.tenant_id,
        name=tenant.name,
        plan=tenant.plan,
        month=usage.month,
        requests=usage.requests,
        cache_hits=usage.cache_hits,
        images_generated=usage.images_generated,
        credits_spent=round(usage.credits_spent, 6),
        credits_reserved=round(max(0.0, usage.credits_committed - usage.credits_spent), 6),
        failed_generations=usage.failed_generations,
        rejected_requests=usage.rejected_requests,
        budget=budget,
        remaining=usage.remaining(tenant),
    )
