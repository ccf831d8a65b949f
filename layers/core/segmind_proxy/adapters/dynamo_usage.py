"""Per-tenant monthly usage and budgets, enforced atomically in DynamoDB.

A generation first *reserves* its estimated cost with one conditional update, so concurrent requests can never
take a tenant past its budget; after the upstream call it *settles* (estimate replaced by the charge), or
*releases* on failure. Condition expressions cannot add, so each budget is enforced on a running
`*_committed` total (spent + reserved) compared with `budget - this request's cost`, computed before the call.

A Lambda process can vanish at any instruction (timeout, crash, out of memory), so no reservation may depend on its
request to be given back. Each one is also written, in the same update, as an entry on the usage item naming its
holder and the time by which the holder is surely gone (`Hold`); settling or releasing removes the entry, on
condition that it is still there, so each reservation is resolved exactly once. The item's `reservations_due` (the
earliest time one of its entries may need taking back) puts it in a sparse index, where `sweeper.ReservationSweeper`
finds what dead requests left behind.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

from segmind_proxy.adapters.after_response import Deferrer, RunNow
from segmind_proxy.adapters.aws_clients import AwsErrors, DynamoTable
from segmind_proxy.adapters.dynamo_tenants import Tenant
from segmind_proxy.domain.errors import GatewayError
from segmind_proxy.observability import MetricUnit, logger, metrics

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


# A usage item's open reservations: one attribute per holder, `reservation#<holder>`, counted by `reservations_open`.
ENTRY_PREFIX = "reservation#"
OPEN_COUNT = "reservations_open"
# The sparse index of usage items that have, or had, open reservations: partition `reservations_sweep` (always
# SWEEP_PARTITION), sort `reservations_due` (epoch seconds). Small: one item per tenant and month at most.
SWEEP_INDEX = "ReservationsDue"
SWEEP_PARTITION = "open"
DUE, SWEEP = "reservations_due", "reservations_sweep"
# No Lambda invocation outlives 15 minutes: a reservation whose holder gave no time of its own is surely abandoned then.
MAX_INVOCATION_SECONDS = 900
# A v2 job's reservation lives across SQS deliveries: the sweeper asks the job store about it this often.
JOB_HOLD_SECONDS = 300
JOB_HOLDER_PREFIX = "job-"

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
class Hold:
    """Who holds a reservation, and until when (epoch seconds): past it, the holder is gone and the sweeper may take
    the reservation back. A request holds it until its invocation's end plus a grace; a job, for JOB_HOLD_SECONDS
    at a time, renewed while the job is queued or running."""

    holder: str
    until: int

    @classmethod
    def for_request(cls, holder: str, seconds_left: float, grace_seconds: float) -> Hold:
        """`seconds_left`: until Lambda ends the invocation, its work after the answer included."""
        return cls(holder, int(time.time() + seconds_left + grace_seconds) + 1)

    @classmethod
    def for_job(cls, job_id: str) -> Hold:
        return cls(f"{JOB_HOLDER_PREFIX}{job_id}", int(time.time()) + JOB_HOLD_SECONDS)

    @classmethod
    def unnamed(cls) -> Hold:
        return cls(uuid.uuid4().hex, int(time.time()) + MAX_INVOCATION_SECONDS)


@dataclass(frozen=True)
class Reservation:
    tenant_id: str
    month: str
    credits: float
    images: int
    holder: str = ""  # empty on reservations made before holders were recorded: resolved without an entry

    @property
    def entry(self) -> str:
        return f"{ENTRY_PREFIX}{self.holder}"


class Meter(DynamoTable):
    def _key(self, tenant_id: str, month: str) -> dict[str, str]:
        return {"pk": f"TENANT#{tenant_id}", "sk": self.sort_key(month)}

    @staticmethod
    def sort_key(month: str) -> str:
        """A month's usage item, under its tenant's partition (next to the profile: both can be read at once)."""
        return f"USAGE#{month}"

    def _add(self, tenant_id: str, month: str, deltas: dict[str, Any], *, before: str = "", **extra: Any) -> Usage:
        """ADD the deltas; `before`: SET or REMOVE clauses that go with them, in the same atomic update."""
        names = {f"#{k}": k for k in deltas}
        values = {f":{k}": v for k, v in deltas.items()}
        result = self.table.update_item(
            Key=self._key(tenant_id, month),
            UpdateExpression=f"{before} ADD " + ", ".join(f"#{k} :{k}" for k in deltas),
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

    def reserve(
        self, tenant: Tenant, credits: float, images: int, hold: Hold | None = None
    ) -> tuple[Reservation, Usage]:
        """Reserve the estimated cost, or raise BudgetExceeded without touching anything. The reservation is recorded
        under its holder (see the module's docstring); the item's due time only ever moves later by the sweeper."""
        month = current_month()
        hold = hold or Hold.unnamed()
        reservation = Reservation(tenant.tenant_id, month, credits, images, hold.holder)
        names = {"#entry": reservation.entry, "#due": DUE, "#sweep": SWEEP}
        values: dict[str, Any] = {
            ":entry": {"credits": _dec(credits), "images": images, "until": hold.until},
            ":due": hold.until,
            ":sweep": SWEEP_PARTITION,
        }
        conditions = []
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
        deltas = {"requests": 1, "credits_committed": _dec(credits), "images_committed": images, OPEN_COUNT: 1}
        extra: dict[str, Any] = {"names": names, "values": values}
        if conditions:
            extra["ConditionExpression"] = " AND ".join(conditions)
        entry = "SET #entry = :entry, #due = if_not_exists(#due, :due), #sweep = :sweep"
        try:
            usage = self._add(tenant.tenant_id, month, deltas, before=entry, **extra)
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                usage = self.usage(tenant.tenant_id, month)
                images_short = (
                    tenant.budget_images is not None and usage.images_committed + images > tenant.budget_images
                )
                over = "images" if images_short or tenant.budget_credits is None else "credits"
                raise self._refusal(tenant, over, images if over == "images" else credits) from None
            raise
        return reservation, usage

    def settle(self, reservation: Reservation, credits: float, images: int) -> Usage | None:
        """Replace the estimate by the charge for what was generated. None: already resolved (by the sweeper)."""
        deltas = {
            "credits_committed": _dec(credits - reservation.credits),
            "credits_spent": _dec(credits),
            "images_committed": images - reservation.images,
            "images_generated": images,
            "upstream_calls": 1,
        }
        return self._resolve(reservation, deltas)

    def release(self, reservation: Reservation, *, failed: bool = True) -> Usage | None:
        """Nothing is charged: the generation failed (counted), or was not needed (a cache hit after all).
        None: already resolved (by the sweeper)."""
        deltas = {
            "credits_committed": _dec(-reservation.credits),
            "images_committed": -reservation.images,
            "failed_generations": int(failed),
        }
        return self._resolve(reservation, deltas)

    def _resolve(self, reservation: Reservation, deltas: dict[str, Any]) -> Usage | None:
        """Apply a settlement or a release once: only while the reservation's entry is there, removing it."""
        if not reservation.holder:
            return self._add(reservation.tenant_id, reservation.month, deltas)
        try:
            return self._add(
                reservation.tenant_id,
                reservation.month,
                {**deltas, OPEN_COUNT: -1},
                before="REMOVE #entry",
                names={"#entry": reservation.entry},
                ConditionExpression="attribute_exists(#entry)",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            logger.warning("Reservation already resolved", extra={"holder": reservation.holder})
            metrics.add_metric(name="ReservationsAlreadyResolved", unit=MetricUnit.Count, value=1)
            return None

    def extend(self, reservation: Reservation, until: int) -> bool:
        """Hold an open reservation longer (a job still queued or running); False if it is resolved already."""
        return self._update_if(
            Key=self._key(reservation.tenant_id, reservation.month),
            UpdateExpression="SET #entry.#until = :until",
            ConditionExpression="attribute_exists(#entry)",
            ExpressionAttributeNames={"#entry": reservation.entry, "#until": "until"},
            ExpressionAttributeValues={":until": until},
        )

    def due(self, now: float) -> list[tuple[str, str]]:
        """The (tenant id, month) of every usage item with a reservation that may need taking back by `now`."""
        found, start = [], None
        while True:
            page = self.table.query(
                IndexName=SWEEP_INDEX,
                KeyConditionExpression="#sweep = :open AND #due <= :now",
                ExpressionAttributeNames={"#sweep": SWEEP, "#due": DUE},
                ExpressionAttributeValues={":open": SWEEP_PARTITION, ":now": int(now)},
                **({"ExclusiveStartKey": start} if start else {}),
            )
            found += [(item["pk"].removeprefix("TENANT#"), item["sk"].removeprefix("USAGE#")) for item in page["Items"]]
            start = page.get("LastEvaluatedKey")
            if not start:
                return found

    def open_reservations(self, tenant_id: str, month: str) -> tuple[dict[Reservation, int], int, int | None]:
        """The item's open reservations with the time each is held until, the count of them it records (which
        counts ones written since this read too), and its due time."""
        item = self.table.get_item(Key=self._key(tenant_id, month), ConsistentRead=True).get("Item") or {}
        held = {
            Reservation(
                tenant_id, month, float(entry["credits"]), int(entry["images"]), name[len(ENTRY_PREFIX) :]
            ): int(entry["until"])
            for name, entry in item.items()
            if name.startswith(ENTRY_PREFIX)
        }
        due = item.get(DUE)
        return held, int(item.get(OPEN_COUNT, 0)), None if due is None else int(due)

    def reschedule(self, tenant_id: str, month: str, *, seen_open: int, next_due: int | None) -> bool:
        """After a sweep: the item's next due time, or out of the index when nothing is open. Only if no reservation
        was made or resolved meanwhile (the count is as seen); otherwise the item stays due and is swept again."""
        update = "SET #due = :next" if next_due is not None else "REMOVE #due, #sweep"
        names = {"#due": DUE, "#open": OPEN_COUNT} | ({} if next_due is not None else {"#sweep": SWEEP})
        values: dict[str, Any] = {":seen": seen_open} | ({":next": next_due} if next_due is not None else {})
        condition = "#open = :seen" if seen_open else "(attribute_not_exists(#open) OR #open = :seen)"
        return self._update_if(
            Key=self._key(tenant_id, month),
            UpdateExpression=update,
            ConditionExpression=condition,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )

    def _update_if(self, **update: Any) -> bool:
        """A conditional update_item: False, and nothing written, when its condition does not hold."""
        try:
            self.table.update_item(**update)
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

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

    def __init__(
        self,
        meter: Meter,
        tenant: Tenant,
        estimate: float,
        images: int,
        usage: Usage | None = None,
        hold: Hold | None = None,
    ) -> None:
        """`usage`: the month's figures as read with the tenant's profile, if they were. `hold`: who holds the
        reservation and until when (a request that gives none holds it for the longest invocation Lambda allows)."""
        self.meter = meter
        self.hold = hold
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
            self.reservation, self.usage = self.meter.reserve(self.tenant, self.estimate, self.images, self.hold)
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
