"""Racing a ledger: many reservations of one budget at once, each settled if it was granted."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from segmind_proxy.domain.ports import UsageLedger
from segmind_proxy.domain.tenants import Tenant
from segmind_proxy.domain.usage import BudgetExceeded


def reserve_at_once(ledger: UsageLedger, tenant: Tenant, attempts: int = 60, credits: float = 0.01) -> list[bool]:
    """Whether each of `attempts` reservations of `credits` for one image, 16 at a time, was granted."""

    def attempt(_: int) -> bool:
        try:
            reservation, _usage = ledger.reserve(tenant, credits, 1)
        except BudgetExceeded:
            return False
        ledger.settle(reservation, credits, 1)
        return True

    with ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(attempt, range(attempts)))
