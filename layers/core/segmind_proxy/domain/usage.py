"""A tenant's monthly usage and budget: figures, reservations and who holds them (see adapters/dynamo_usage.py for
how they are kept atomically)."""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from segmind_proxy.domain.errors import BudgetExceeded
from segmind_proxy.domain.tenants import Tenant

COUNTERS = (
    "requests",
    "cache_hits",
    "images_generated",
    "upstream_calls",
    "failed_generations",
    "rejected_requests",
    "refused_prompts",
    "unscreened_requests",
    "credits_spent",
    "credits_committed",
    "images_committed",
)


class Counted(StrEnum):
    """What is counted for a tenant without a charge, each with what it adds to the month's figures."""

    REJECTED = "rejected"  # refused by validation or by its budget
    REFUSED = "refused"  # refused by the content policy: a rejected request too
    UNSCREENED = "unscreened"  # served without screening: the screen could not answer and the policy fails open


COUNTED_DELTAS: dict[Counted, dict[str, int]] = {
    Counted.REJECTED: {"requests": 1, "rejected_requests": 1},
    Counted.REFUSED: {"requests": 1, "rejected_requests": 1, "refused_prompts": 1},
    Counted.UNSCREENED: {"unscreened_requests": 1},  # the request itself is counted as it is served
}

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


# A month's figures of one model, on the tenant's usage item: `model#<slug>#<figure>`.
MODEL_PREFIX = "model#"
MODEL_FIGURES = ("images_generated", "credits_spent")


def model_counter(slug: str, figure: str) -> str:
    return f"{MODEL_PREFIX}{slug}#{figure}"


def model_deltas(slug: str, credits: Any, images: int) -> dict[str, Any]:
    """What a charge adds to the figures of its model (nothing for a reservation made without one)."""
    if not slug:
        return {}
    return {model_counter(slug, "images_generated"): images, model_counter(slug, "credits_spent"): credits}


def budget_refusal(tenant: Tenant, over: str, cost: float) -> BudgetExceeded:
    budget = tenant.budget_credits if over == "credits" else tenant.budget_images
    return BudgetExceeded(
        f"Monthly budget of {budget} {over} for tenant '{tenant.name}' does not cover this request "
        f"({cost} {over}); it renews on the 1st (UTC) or the operator can raise it"
    )


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
    refused_prompts: int = 0  # of the rejected requests, those the content policy refused
    unscreened_requests: int = 0  # served unscreened, as a policy that fails open allows
    credits_spent: float = 0.0
    credits_committed: float = 0.0  # spent + reserved by requests in flight
    images_committed: int = 0
    by_model: dict[str, dict[str, float | int]] = field(default_factory=dict)  # slug -> images, credits

    @classmethod
    def from_item(cls, tenant_id: str, month: str, item: dict[str, Any] | None) -> Usage:
        item = item or {}
        usage = cls(tenant_id, month)
        for name in COUNTERS:
            if name in item:
                kind = type(getattr(usage, name))
                setattr(usage, name, kind(item[name]))
        for name, value in item.items():
            if name.startswith(MODEL_PREFIX):
                slug, _, figure = name.removeprefix(MODEL_PREFIX).rpartition("#")
                if figure in MODEL_FIGURES:
                    kind = int if figure == "images_generated" else float
                    usage.by_model.setdefault(slug, {"images_generated": 0, "credits_spent": 0.0})[figure] = kind(value)
        return usage

    def remaining(self, tenant: Tenant) -> dict[str, float | int | None]:
        return {
            "credits": None
            if tenant.budget_credits is None
            else round(max(0.0, tenant.budget_credits - self.credits_committed), 6),
            "images": None if tenant.budget_images is None else max(0, tenant.budget_images - self.images_committed),
        }

    @property
    def recorded(self) -> bool:
        """Whether the month holds anything at all: a request, a charge or a reservation."""
        return bool(self.requests or self.credits_spent or self.credits_committed)

    def figures(self, tenant: Tenant) -> dict[str, Any]:
        """The month's figures as every report names them (`GET /v1/usage`, the CLI's `tenants show` and its billing
        report): `credits_reserved` is what generations in flight hold, the committed total less what is spent."""
        return {
            "month": self.month,
            "requests": self.requests,
            "cache_hits": self.cache_hits,
            "images_generated": self.images_generated,
            "credits_spent": round(self.credits_spent, 6),
            "credits_reserved": round(max(0.0, self.credits_committed - self.credits_spent), 6),
            "failed_generations": self.failed_generations,
            "rejected_requests": self.rejected_requests,
            "refused_prompts": self.refused_prompts,
            "unscreened_requests": self.unscreened_requests,
            "budget": {"credits": tenant.budget_credits, "images": tenant.budget_images},
            "remaining": self.remaining(tenant),
            "by_model": {
                slug: {"images_generated": int(f["images_generated"]), "credits_spent": round(f["credits_spent"], 6)}
                for slug, f in sorted(self.by_model.items())
                if f["images_generated"] or f["credits_spent"]
            },
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
    model: str = ""  # the model's slug, whose figures its charge adds to; empty on reservations made before models


@dataclass(frozen=True)
class Caller:
    """The tenant (None where tenancy is off) and the namespace its images and jobs live in."""

    tenant: Tenant | None
    namespace: str
    usage: Usage | None = None  # this month's figures, when read with the tenant's profile
