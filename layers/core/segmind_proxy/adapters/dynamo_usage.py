"""The usage ledger in DynamoDB: per-tenant monthly usage and budgets, enforced atomically.

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

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

from segmind_proxy.adapters.aws_clients import DynamoTable, condition_failed, raising_outages
from segmind_proxy.domain.errors import Dependency
from segmind_proxy.domain.tenants import Tenant
from segmind_proxy.domain.usage import (
    COUNTED_DELTAS,
    Counted,
    Hold,
    Reservation,
    Usage,
    budget_refusal,
    current_month,
    model_deltas,
)
from segmind_proxy.observability import MetricUnit, logger, metrics

# A usage item's open reservations: one attribute per holder, `reservation#<holder>`, counted by `reservations_open`.
ENTRY_PREFIX = "reservation#"
OPEN_COUNT = "reservations_open"
# The sparse index of usage items that have, or had, open reservations: partition `reservations_sweep` (always
# SWEEP_PARTITION), sort `reservations_due` (epoch seconds). Small: one item per tenant and month at most.
SWEEP_INDEX = "ReservationsDue"
SWEEP_PARTITION = "open"
DUE, SWEEP = "reservations_due", "reservations_sweep"


def _dec(value: float) -> Decimal:
    return Decimal(str(round(value, 6)))


def _entry(reservation: Reservation) -> str:
    """The usage item's attribute that records an open reservation under its holder."""
    return f"{ENTRY_PREFIX}{reservation.holder}"


@raising_outages(Dependency.LEDGER)
class Meter(DynamoTable):
    def _key(self, tenant_id: str, month: str) -> dict[str, str]:
        return {"pk": f"TENANT#{tenant_id}", "sk": self.sort_key(month)}

    @staticmethod
    def sort_key(month: str) -> str:
        """A month's usage item, under its tenant's partition (next to the profile: both can be read at once)."""
        return f"USAGE#{month}"

    def _add(self, tenant_id: str, month: str, deltas: dict[str, Any], *, before: str = "", **extra: Any) -> Usage:
        """ADD the deltas; `before`: SET or REMOVE clauses that go with them, in the same atomic update."""
        # A counter's own name as its placeholder; by position where it cannot be one (`model#flux-dev#images...`).
        holders = [name if name.isidentifier() else f"m{i}" for i, name in enumerate(deltas)]
        names = {f"#{holder}": name for holder, name in zip(holders, deltas, strict=True)}
        values = {f":{holder}": value for holder, value in zip(holders, deltas.values(), strict=True)}
        result = self.table.update_item(
            Key=self._key(tenant_id, month),
            UpdateExpression=f"{before} ADD " + ", ".join(f"#{holder} :{holder}" for holder in holders),
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

    def record(self, tenant: Tenant, event: Counted) -> None:
        self._add(tenant.tenant_id, current_month(), COUNTED_DELTAS[event])

    def reserve(
        self, tenant: Tenant, credits: float, images: int, hold: Hold | None = None, model: str = ""
    ) -> tuple[Reservation, Usage]:
        """Reserve the estimated cost, or raise BudgetExceeded without touching anything. The reservation is recorded
        under its holder (see the module's docstring); the item's due time only ever moves later by the sweeper."""
        month = current_month()
        hold = hold or Hold.unnamed()
        reservation = Reservation(tenant.tenant_id, month, credits, images, hold.holder, model)
        names = {"#entry": _entry(reservation), "#due": DUE, "#sweep": SWEEP}
        values: dict[str, Any] = {
            ":entry": {"credits": _dec(credits), "images": images, "until": hold.until, "model": model},
            ":due": hold.until,
            ":sweep": SWEEP_PARTITION,
        }
        conditions = []
        if tenant.budget_credits is not None:
            headroom = tenant.budget_credits - credits
            if headroom < 0:
                raise budget_refusal(tenant, "credits", credits)
            conditions.append("(attribute_not_exists(#cc) OR #cc <= :credit_headroom)")
            values[":credit_headroom"] = _dec(headroom)
            names["#cc"] = "credits_committed"
        if tenant.budget_images is not None:
            headroom_images = tenant.budget_images - images
            if headroom_images < 0:
                raise budget_refusal(tenant, "images", images)
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
            if condition_failed(exc):
                usage = self.usage(tenant.tenant_id, month)
                images_short = (
                    tenant.budget_images is not None and usage.images_committed + images > tenant.budget_images
                )
                over = "images" if images_short or tenant.budget_credits is None else "credits"
                raise budget_refusal(tenant, over, images if over == "images" else credits) from None
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
            **model_deltas(reservation.model, _dec(credits), images),
        }
        return self._resolve(reservation, deltas)

    def release(self, reservation: Reservation, *, failed: bool = True, hit: bool = False) -> Usage | None:
        """Nothing is charged: the generation failed (counted), or was not needed. `hit`: an identical request's
        images came instead, counted as the request's cache hit (its reservation counted the request already).
        None: already resolved (by the sweeper)."""
        deltas = {
            "credits_committed": _dec(-reservation.credits),
            "images_committed": -reservation.images,
            "failed_generations": int(failed),
        }
        if hit:
            deltas["cache_hits"] = 1
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
                names={"#entry": _entry(reservation)},
                ConditionExpression="attribute_exists(#entry)",
            )
        except ClientError as exc:
            if not condition_failed(exc):
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
            ExpressionAttributeNames={"#entry": _entry(reservation), "#until": "until"},
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
                tenant_id,
                month,
                float(entry["credits"]),
                int(entry["images"]),
                name[len(ENTRY_PREFIX) :],
                str(entry.get("model", "")),
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
            if condition_failed(exc):
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
                **model_deltas(reservation.model, _dec(-credits), -images),
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
