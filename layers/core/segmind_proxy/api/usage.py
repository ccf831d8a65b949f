"""`GET /v1/usage`: the calling tenant's own figures for a month and what remains of its budget."""

from __future__ import annotations

from collections.abc import Mapping

from segmind_proxy.api.schemas import UsageReport
from segmind_proxy.domain.errors import NotFound, RequestInvalid
from segmind_proxy.domain.ports import UsageLedger
from segmind_proxy.domain.tenants import Tenant
from segmind_proxy.domain.usage import Usage, is_month
from segmind_proxy.flows.usage import month_usage


def handle_usage(tenant: Tenant | None, query: Mapping[str, str] | None, ledger: UsageLedger | None) -> UsageReport:
    """`?month=YYYY-MM` for another month than this one; any other parameter is refused."""
    if tenant is None or ledger is None:
        raise NotFound("Usage metering is not enabled on this gateway")
    # A misspelt parameter (?mnth=) would otherwise silently report this month.
    unknown = sorted(set(query or {}) - {"month"})
    if unknown:
        shown = ", ".join(repr(name[:40]) for name in unknown[:5])
        raise RequestInvalid(f"Unknown query parameter {shown}: only 'month' is read")
    month = (query or {}).get("month")
    if month is not None and not is_month(month):
        raise RequestInvalid("'month' must be YYYY-MM")
    return usage_report(month_usage(ledger, tenant, month), tenant)


def usage_report(usage: Usage, tenant: Tenant) -> UsageReport:
    return UsageReport(tenant_id=tenant.tenant_id, name=tenant.name, plan=tenant.plan, **usage.figures(tenant))
