"""The usage ledger in memory, kept as adapters/dynamo_usage.py's Meter keeps it in DynamoDB: one item per tenant and
month whose counters only move by atomic deltas, reservations refused past a budget without touching anything, each
open reservation an entry under its holder resolved (settled or released) exactly once, and the sweep index of items
that have open reservations (`due`, `reschedule`)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from segmind_proxy.domain.errors import Dependency
from segmind_proxy.domain.tenants import Tenant
from segmind_proxy.domain.usage import (
    COUNTED_DELTAS,
    COUNTERS,
    MODEL_PREFIX,
    Counted,
    Hold,
    Reservation,
    Usage,
    budget_refusal,
    current_month,
    model_deltas,
)
from tests.fakes.errors import Breakable


def _dec(value: float) -> Decimal:
    return Decimal(str(round(value, 6)))  # as the Meter writes credits: exact sums of six-decimal amounts


@dataclass
class _Item:
    counters: dict[str, Any] = field(default_factory=dict)
    entries: dict[str, tuple[float, int, int, str]] = field(
        default_factory=dict
    )  # holder -> (credits, images, until, model)
    open: int = 0  # reservations_open: counts entries written, minus those resolved
    due: int | None = None  # reservations_due: set while the item is in the sweep index
    swept: bool = False  # in the sweep index


class FakeLedger(Breakable):
    """A `UsageLedger`. `unreachable("reserve", "settle", ...)` makes those unreachable."""

    dependency = Dependency.LEDGER

    def __init__(self) -> None:
        super().__init__()
        self.items: dict[tuple[str, str], _Item] = {}
        self.balances: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    # -- reads ---------------------------------------------------------------------------------------------------------
    def usage(self, tenant_id: str, month: str | None = None) -> Usage:
        self._may_fail("usage")
        month = month or current_month()
        with self._lock:
            item = self.items.get((tenant_id, month))
            return Usage.from_item(tenant_id, month, dict(item.counters) if item else None)

    def open_reservations(self, tenant_id: str, month: str) -> tuple[dict[Reservation, int], int, int | None]:
        self._may_fail("open_reservations")
        with self._lock:
            item = self.items.get((tenant_id, month)) or _Item()
            held = {
                Reservation(tenant_id, month, credits, images, holder, model): until
                for holder, (credits, images, until, model) in item.entries.items()
            }
            return held, item.open, item.due

    def due(self, now: float) -> list[tuple[str, str]]:
        self._may_fail("due")
        with self._lock:
            return sorted(
                (
                    key
                    for key, item in self.items.items()
                    if item.swept and item.due is not None and item.due <= int(now)
                ),
                key=lambda key: (self.items[key].due, key),
            )

    # -- counting ------------------------------------------------------------------------------------------------------
    def record_hit(self, tenant: Tenant) -> Usage:
        self._may_fail("record_hit")
        return self._add(tenant.tenant_id, current_month(), {"requests": 1, "cache_hits": 1})

    def record(self, tenant: Tenant, event: Counted) -> None:
        self._may_fail("record")
        self._add(tenant.tenant_id, current_month(), COUNTED_DELTAS[event])

    def record_balance(self, balance: float) -> None:
        self._may_fail("record_balance")
        with self._lock:
            record = self.balances.setdefault(current_month(), {"first_balance": balance})
            record |= {"last_balance": balance, "last_at": datetime.now(UTC).isoformat(timespec="seconds")}

    def balance(self, month: str | None = None) -> dict[str, Any] | None:
        with self._lock:
            record = self.balances.get(month or current_month())
            return dict(record) if record else None

    # -- reservations --------------------------------------------------------------------------------------------------
    def reserve(
        self, tenant: Tenant, credits: float, images: int, hold: Hold | None = None, model: str = ""
    ) -> tuple[Reservation, Usage]:
        self._may_fail("reserve")
        month = current_month()
        hold = hold or Hold.unnamed()
        reservation = Reservation(tenant.tenant_id, month, credits, images, hold.holder, model)
        if tenant.budget_credits is not None and tenant.budget_credits - credits < 0:
            raise budget_refusal(tenant, "credits", credits)
        if tenant.budget_images is not None and tenant.budget_images - images < 0:
            raise budget_refusal(tenant, "images", images)
        with self._lock:
            item = self.items.setdefault((tenant.tenant_id, month), _Item())
            committed_credits = item.counters.get("credits_committed", Decimal(0))
            committed_images = item.counters.get("images_committed", 0)
            credits_short = tenant.budget_credits is not None and committed_credits > _dec(
                tenant.budget_credits - credits
            )
            images_short = tenant.budget_images is not None and committed_images > tenant.budget_images - images
            if credits_short or images_short:
                over = "images" if images_short or tenant.budget_credits is None else "credits"
                raise budget_refusal(tenant, over, images if over == "images" else credits)
            item.entries[hold.holder] = (float(_dec(credits)), images, hold.until, model)
            item.open += 1
            item.due = hold.until if item.due is None else item.due
            item.swept = True
            usage = self._apply(
                tenant.tenant_id,
                month,
                item,
                {"requests": 1, "credits_committed": _dec(credits), "images_committed": images},
            )
        return reservation, usage

    def settle(self, reservation: Reservation, credits: float, images: int) -> Usage | None:
        self._may_fail("settle")
        deltas = {
            "credits_committed": _dec(credits - reservation.credits),
            "credits_spent": _dec(credits),
            "images_committed": images - reservation.images,
            "images_generated": images,
            "upstream_calls": 1,
            **model_deltas(reservation.model, _dec(credits), images),
        }
        return self._resolve(reservation, deltas)

    def release(self, reservation: Reservation, *, failed: bool = True, hit: bool = False) -> Usage | None:
        self._may_fail("release")
        deltas = {
            "credits_committed": _dec(-reservation.credits),
            "images_committed": -reservation.images,
            "failed_generations": int(failed),
        }
        if hit:
            deltas["cache_hits"] = 1
        return self._resolve(reservation, deltas)

    def refund(self, reservation: Reservation, credits: float, images: int) -> Usage:
        self._may_fail("refund")
        deltas = {
            "credits_committed": _dec(-credits),
            "credits_spent": _dec(-credits),
            "images_committed": -images,
            "images_generated": -images,
            "failed_generations": 1,
            **model_deltas(reservation.model, _dec(-credits), -images),
        }
        return self._add(reservation.tenant_id, reservation.month, deltas)

    def extend(self, reservation: Reservation, until: int) -> bool:
        self._may_fail("extend")
        with self._lock:
            item = self.items.get((reservation.tenant_id, reservation.month))
            if item is None or reservation.holder not in item.entries:
                return False
            credits, images, _, model = item.entries[reservation.holder]
            item.entries[reservation.holder] = (credits, images, until, model)
            return True

    def reschedule(self, tenant_id: str, month: str, *, seen_open: int, next_due: int | None) -> bool:
        self._may_fail("reschedule")
        with self._lock:
            item = self.items.setdefault((tenant_id, month), _Item())
            if item.open != seen_open:  # a reservation was made or resolved since the sweeper read the item
                return False
            if next_due is None:
                item.due, item.swept = None, False
            else:
                item.due = next_due
            return True

    # -- the atomic updates ------------------------------------------------------------------------------------------
    def _resolve(self, reservation: Reservation, deltas: dict[str, Any]) -> Usage | None:
        """Once: only while the reservation's entry is there, removing it (reservations without a holder: always)."""
        with self._lock:
            item = self.items.setdefault((reservation.tenant_id, reservation.month), _Item())
            if reservation.holder:
                if reservation.holder not in item.entries:
                    return None
                del item.entries[reservation.holder]
                item.open -= 1
            return self._apply(reservation.tenant_id, reservation.month, item, deltas)

    def _add(self, tenant_id: str, month: str, deltas: dict[str, Any]) -> Usage:
        with self._lock:
            return self._apply(tenant_id, month, self.items.setdefault((tenant_id, month), _Item()), deltas)

    @staticmethod
    def _apply(tenant_id: str, month: str, item: _Item, deltas: dict[str, Any]) -> Usage:
        for name, delta in deltas.items():
            assert name in COUNTERS or name.startswith(MODEL_PREFIX), name
            item.counters[name] = item.counters.get(name, 0) + delta
        return Usage.from_item(tenant_id, month, dict(item.counters))
