"""Per-tenant monthly usage and budgets, enforced atomically in DynamoDB.

A generation first *reserves* its estimated cost with one conditional update, so concurrent requests can never
take a tenant past its budget; after the upstream call it *settles* (estimate replaced by the charge), or
*releases* on failure. Condition expressions cannot add, so each budget is enforced on a running
`*_committed` total (spent + reserved) compared with `budget - this request's cost`, computed before the call.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

from .after_response import Deferrer, RunNow
from .aws_clients import AwsErrors, DynamoTable
from .errors import GatewayError
from .observability import MetricUnit, logger, metrics
from .tenants import Tenant

COUNTERS = (
    "requests",
    "cache_hits",
    "images_generated",
    "upstream_calls",
    "failed_generations",
    "rejected_requests",
    "credits_spent",
    "credits_committed",
    "images_committed",
)


MONTH_PATTERN = r"^\d{4}-(0[1-9]|1[0-2])$"  # also the OpenAPI spec's
_MONTH = re.compile(MONTH_PATTERN)


def current_month(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime("%Y-%m")


def is_month(value: str) -> bool:
    """A ledger month as it is written: YYYY-MM."""
    return bool(_MONTH.match(value))


def _dec(value: float) -> Decimal:
    return Decimal(str(round(value, 6)))


class BudgetExceeded(GatewayError):
    def __init__(self, message: str) -> None:
        super().__init__(402, message, kind="budget")


@dataclass
class Usage:
    tenant_id: str
    month: str
    requests: int = 0
    cache_hits: int = 0
    images_generated: int = 0
    upstream_calls: int = 0
    failed_generations: int = 0
    rejected_requests: int = 0
    credits_spent: float = 0.0
    credits_committed: float = 0.0  # spent + reserved by requests in flight
    images_committed: int = 0

    @classmethod
    def from_item(cls, tenant_id: str, month: str, item: dict[str, Any] | None) -> Usage:
        item = item or {}
        usage = cls(tenant_id, month)
        for name in COUNTERS:
            if name in item:
                kind = type(getattr(usage, name))
                setattr(usage, name, kind(item[name]))
        return usage

    def remaining(self, tenant: Tenant) -> dict[str, float | int | None]:
        return {
            "credits": None
            if tenant.budget_credits is None
            else round(max(0.0, tenant.budget_credits - self.credits_committed), 6),
            "images": None if tenant.budget_images is None else max(0, tenant.budget_images - self.images_committed),
        }

    def settled(self, reservation: Reservation, credits: float, images: int) -> Usage:
        """These figures once `Meter.settle` has replaced the reservation by its charge (as far as budgets go)."""
        return replace(
            self,
            credits_committed=self.credits_committed + credits - reservation.credits,
            images_committed=self.images_committed + images - reservation.images,
        )


@dataclass(frozen=True)
class Reservation:
    tenant_id: str
    month: str
    credits: float
    images: int


class Meter(DynamoTable):
    def _key(self, tenant_id: str, month: str) -> dict[str, str]:
        return {"pk": f"TENANT#{tenant_id}", "sk": self.sort_key(month)}

    @staticmethod
    def sort_key(month: str) -> str:
        """A month's usage item, under its tenant's partition (next to the profile: both can be read at once)."""
        return f"USAGE#{month}"

    def _add(self, tenant_id: str, month: str, deltas: dict[str, Any], **extra: Any) -> Usage:
        names = {f"#{k}": k for k in deltas}
        values = {f":{k}": v for k, v in deltas.items()}
        result = self.table.update_item(
            Key=self._key(tenant_id, month),
            UpdateExpression="ADD " + ", ".join(f"#{k} :{k}" for k in deltas),
            ExpressionAttributeNames={**names, **extra.pop("names", {})},
            ExpressionAttributeValues={**values, **extra.pop("values", {})},
            ReturnValues="ALL_NEW",
            **extra,
        )
        return Usage.from_item(tenant_id, month, result.get("Attributes"))

    def usage(self, tenant_id: str, month: str | None = None) -> Usage:
        month = month or current_month()
        item = self.table.get_item(Key=self._key(tenant_id, month), ConsistentRead=True).get("Item")
        return Usage.from_item(tenant_id, month, item)

    def record_hit(self, tenant: Tenant) -> Usage:
        """A cache hit: counted, never charged."""
        return self._add(tenant.tenant_id, current_month(), {"requests": 1, "cache_hits": 1})

    def record_rejected(self, tenant: Tenant) -> None:
        self._add(tenant.tenant_id, current_month(), {"requests": 1, "rejected_requests": 1})

    def reserve(self, tenant: Tenant, credits: float, images: int) -> tuple[Reservation, Usage]:
        """Reserve the estimated cost, or raise BudgetExceeded without touching anything."""
        month = current_month()
        conditions, values, names = [], {}, {}
        if tenant.budget_credits is not None:
            headroom = tenant.budget_credits - credits
            if headroom < 0:
                raise self._refusal(tenant, "credits", credits)
            conditions.append("(attribute_not_exists(#cc) OR #cc <= :credit_headroom)")
            values[":credit_headroom"] = _dec(headroom)
            names["#cc"] = "credits_committed"
        if tenant.budget_images is not None:
            headroom_images = tenant.budget_images - images
            if headroom_images < 0:
                raise self._refusal(tenant, "images", images)
            conditions.append("(attribute_not_exists(#ic) OR #ic <= :image_headroom)")
            values[":image_headroom"] = headroom_images
            names["#ic"] = "images_committed"
        deltas = {"requests": 1, "credits_committed": _dec(credits), "images_committed": images}
        extra: dict[str, Any] = {"names": names, "values": values}
        if conditions:
            extra["ConditionExpression"] = " AND ".join(conditions)
        try:
            usage = self._add(tenant.tenant_id, month, deltas, **extra)
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                usage = self.usage(tenant.tenant_id, month)
                images_short = (
                    tenant.budget_images is not None and usage.images_committed + images > tenant.budget_images
                )
                over = "images" if images_short or tenant.budget_credits is None else "credits"
                raise self._refusal(tenant, over, images if over == "images" else credits) from None
            raise
        return Reservation(tenant.tenant_id, month, credits, images), usage

    def settle(self, reservation: Reservation, credits: float, images: int) -> Usage:
        """Replace the estimate by the charge for what was generated."""
        return self._add(
            reservation.tenant_id,
            reservation.month,
            {
                "credits_committed": _dec(credits - reservation.credits),
                "credits_spent": _dec(credits),
                "images_committed": images - reservation.images,
                "images_generated": images,
                "upstream_calls": 1,
            },
        )

    def release(self, reservation: Reservation, *, failed: bool = True) -> Usage:
        """Nothing is charged: the generation failed (counted), or was not needed (a cache hit after all)."""
        return self._add(
            reservation.tenant_id,
            reservation.month,
            {
                "credits_committed": _dec(-reservation.credits),
                "images_committed": -reservation.images,
                "failed_generations": int(failed),
            },
        )

    def refund(self, reservation: Reservation, credits: float, images: int) -> Usage:
        """Undo a settlement: the images were paid to Segmind but never reached the tenant (counted as failed)."""
        return self._add(
            reservation.tenant_id,
            reservation.month,
            {
                "credits_committed": _dec(-credits),
                "credits_spent": _dec(-credits),
                "images_committed": -images,
                "images_generated": -images,
                "failed_generations": 1,
            },
        )

    def record_balance(self, balance: float) -> None:
        """Segmind's reported balance: the month's first and latest, to reconcile estimates with real spend."""
        month = current_month()
        self.table.update_item(
            Key={"pk": "ACCOUNT", "sk": f"BALANCE#{month}"},
            UpdateExpression="SET first_balance = if_not_exists(first_balance, :b), last_balance = :b, last_at = :t",
            ExpressionAttributeValues={":b": _dec(balance), ":t": datetime.now(UTC).isoformat(timespec="seconds")},
        )

    def balance(self, month: str | None = None) -> dict[str, Any] | None:
        key = {"pk": "ACCOUNT", "sk": f"BALANCE#{month or current_month()}"}
        item = self.table.get_item(Key=key, ConsistentRead=True).get("Item")
        if not item:
            return None
        return {k: float(v) if isinstance(v, Decimal) else v for k, v in item.items() if k not in ("pk", "sk")}

    @staticmethod
    def _refusal(tenant: Tenant, over: str, cost: float) -> BudgetExceeded:
        budget = tenant.budget_credits if over == "credits" else tenant.budget_images
        return BudgetExceeded(
            f"Monthly budget of {budget} {over} for tenant '{tenant.name}' does not cover this request "
            f"({cost} {over}); it renews on the 1st (UTC) or the operator can raise it"
        )


BALANCE_WRITE_INTERVAL_SECONDS = 60.0
_last_balance_write = [-BALANCE_WRITE_INTERVAL_SECONDS]


def _balance_due() -> bool:
    """Reconciliation needs the month's first and latest balance, not every one: write at most once a minute."""
    now = time.monotonic()
    if now - _last_balance_write[0] < BALANCE_WRITE_INTERVAL_SECONDS:
        return False
    _last_balance_write[0] = now
    return True


class TenantBilling:
    """Billing of one request for one tenant: hits are free, generations reserve then settle or release."""

    def __init__(self, meter: Meter, tenant: Tenant, estimate: float, images: int, usage: Usage | None = None) -> None:
        """`usage`: the month's figures as read with the tenant's profile, if they were."""
        self.meter = meter
        self.tenant = tenant
        self.estimate = estimate
        self.images = images
        self.reservation: Reservation | None = None
        self.usage: Usage | None = None
        self._read_usage = usage
        self.settled: tuple[Reservation, float, int] | None = None  # what `settle` charged, for `refund`
        self._settling = self._refunded = False  # a settlement deferred until after the answer, and its fate

    def on_hit(self, later: Deferrer | None = None, *, answer_shows_usage: bool = True) -> None:
        """Count a hit. `later`: the answer may go before the count is written, when nothing was reserved and the
        answer needs no figures or they were read with the tenant (a hit changes no budget: they are the same)."""
        figures_known = self._read_usage is not None or not answer_shows_usage
        if later is not None and self.reservation is None and figures_known:
            self.usage = self._read_usage
            later.defer(self.best_effort, lambda: self.meter.record_hit(self.tenant))
            return
        self.release(failed=False)  # reserved in case it had to generate; an identical request's images came instead
        self.usage = self.best_effort(lambda: self.meter.record_hit(self.tenant))

    def reserve(self) -> None:
        try:
            self.reservation, self.usage = self.meter.reserve(self.tenant, self.estimate, self.images)
        except AwsErrors:
            logger.exception("Usage ledger unavailable; refusing before any credit is spent")
            raise GatewayError(
                503, "The usage ledger is unavailable; nothing was charged, retry shortly", kind="ledger"
            ) from None

    def settle(self, images: int, reported_balance: float | None, later: Deferrer | None = None) -> None:
        """Charge for the images generated. `later`: the answer carries them, so the ledger's record can follow it
        (see `after_response`); the budget already holds their estimate, and the answer's figures are the same."""
        if self.reservation is None:
            return
        charge = self.estimate * images / self.images if self.images else 0.0
        reservation = self.reservation
        if later is None:
            self._settle(reservation, charge, images)
        else:
            if self.usage is not None:
                self.usage = self.usage.settled(reservation, charge, images)
            self._settling = True
            later.defer(self._settle_unless_refunded, reservation, charge, images)
        if reported_balance is not None and _balance_due():
            (later or RunNow()).defer(self.best_effort, lambda: self.meter.record_balance(reported_balance))

    def _settle(self, reservation: Reservation, charge: float, images: int) -> None:
        usage = self.best_effort(lambda: self.meter.settle(reservation, charge, images))
        if usage is not None:
            self.usage, self.settled = usage, (reservation, charge, images)

    def _settle_unless_refunded(self, reservation: Reservation, charge: float, images: int) -> None:
        self._settling = False
        if self._refunded:  # the answer failed after all: nothing reached the client, nothing is charged
            self.best_effort(lambda: self.meter.release(reservation, failed=True))
        else:
            self._settle(reservation, charge, images)

    def release(self, failed: bool = True) -> None:
        """Give the reservation back, once (later calls do nothing)."""
        if self.reservation is not None:
            reservation, self.reservation = self.reservation, None
            self.usage = self.best_effort(lambda: self.meter.release(reservation, failed=failed)) or self.usage

    def refund(self) -> None:
        """Undo this request's settlement, once: its images reached the client neither in the answer nor in S3."""
        if self._settling:  # not written yet: it becomes a release instead
            self._refunded = True
        elif self.settled is not None:
            settled, self.settled = self.settled, None
            self.usage = self.best_effort(lambda: self.meter.refund(*settled)) or self.usage

    def remaining(self) -> dict[str, float | int | None]:
        return self.usage.remaining(self.tenant) if self.usage else {"credits": None, "images": None}

    @staticmethod
    def best_effort(call: Callable[[], Any]) -> Any:
        """After the upstream call, ledger errors must not lose the image: log, count, carry on."""
        try:
            return call()
        except AwsErrors:
            logger.exception("Usage ledger write failed after generation")
            metrics.add_metric(name="LedgerErrors", unit=MetricUnit.Count, value=1)
            return None
