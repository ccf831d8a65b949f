"""A tenant's usage for one month (this one unless named)."""

from __future__ import annotations

from segmind_proxy.domain.ports import UsageLedger
from segmind_proxy.domain.tenants import Tenant
from segmind_proxy.domain.usage import Usage, current_month


def month_usage(ledger: UsageLedger, tenant: Tenant, month: str | None = None) -> Usage:
    return ledger.usage(tenant.tenant_id, month or current_month())
