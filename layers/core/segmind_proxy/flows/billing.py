"""Billing, the one place for reserve, settle and release: a request or a job reserves its estimated cost before
the upstream call, then settles it for the images that came, or releases it; hits are free, and a settlement whose
images never reach the client is refunded. Requests refused by validation or budget are counted, never charged."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from segmind_proxy.domain.errors import BudgetExceeded, Dependency, Outage, PromptRefused, RequestInvalid, Unavailable
from segmind_proxy.domain.jobs import Job
from segmind_proxy.domain.ports import Deferrer, JobStore, UsageLedger
from segmind_proxy.domain.pricing import estimate
from segmind_proxy.domain.request import Txt2ImgRequest
from segmind_proxy.domain.tenants import Tenant
from segmind_proxy.domain.usage import Caller, Counted, Hold, Reservation, Usage
from segmind_proxy.flows.run_now import RunNow
from segmind_proxy.observability import MetricUnit, logger, metrics


class Billing(Protocol):
    """How a request is charged: nothing for hits, a reservation before the upstream call, settled or released,
    and a settlement refunded if its images never reach the client."""

    def on_hit(self, later: Deferrer | None = None, *, answer_shows_usage: bool = True) -> None: ...
    def reserve(self) -> None: ...
    def settle(self, images: int, reported_balance: float | None, later: Deferrer | None = None) -> None: ...
    def release(self, failed: bool = True) -> None: ...
    def refund(self) -> None: ...


class NoBilling:
    def on_hit(self, later: Deferrer | None = None, *, answer_shows_usage: bool = True) -> None:
        pass

    def reserve(self) -> None:
        pass

    def settle(self, images: int, reported_balance: float | None, later: Deferrer | None = None) -> None:
        pass

    def release(self, failed: bool = True) -> None:
        pass

    def refund(self) -> None:
        pass


BALANCE_WRITE_INTERVAL_SECONDS = 60.0
_last_balance_write = [-BALANCE_WRITE_INTERVAL_SECONDS]


def forget_balance_write() -> None:
    """Forget when the balance was last written (SnapStart's after-restore hook): the time is on the monotonic
    clock of the environment that was snapshotted."""
    _last_balance_write[0] = -BALANCE_WRITE_INTERVAL_SECONDS


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
        meter: UsageLedger,
        tenant: Tenant,
        estimate: float,
        images: int,
        usage: Usage | None = None,
        hold: Hold | None = None,
        model: str = "",
    ) -> None:
        """`usage`: the month's figures as read with the tenant's profile, if they were. `hold`: who holds the
        reservation and until when (a request that gives none holds it for the longest invocation Lambda allows).
        `model`: the slug whose figures the charge adds to."""
        self.meter = meter
        self.hold = hold
        self.model = model
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
        if self.reservation is not None:
            # Reserved in case it had to generate; an identical request's images came instead. The reservation
            # counted the request already: giving it back counts the hit, in the same update.
            reservation, self.reservation = self.reservation, None
            released = self.best_effort(lambda: self.meter.release(reservation, failed=False, hit=True))
            if released is not None:
                self.usage = released
                return
        self.usage = self.best_effort(lambda: self.meter.record_hit(self.tenant))

    def reserve(self) -> None:
        try:
            self.reservation, self.usage = self.meter.reserve(
                self.tenant, self.estimate, self.images, self.hold, self.model
            )
        except Outage:
            logger.exception("Usage ledger unavailable; refusing before any credit is spent")
            raise Unavailable(
                Dependency.LEDGER, "The usage ledger is unavailable; nothing was charged, retry shortly"
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
        except Outage:
            logger.exception("Usage ledger write failed after generation")
            metrics.add_metric(name="LedgerErrors", unit=MetricUnit.Count, value=1)
            return None


class JobBilling(TenantBilling):
    """TenantBilling whose reservation lives on the job record and is settled only once the job is COMPLETED."""

    def __init__(self, meter: UsageLedger, tenant: Tenant, job: Job, jobs: JobStore, images: int) -> None:
        """`images`: how many the job's request asks for."""
        super().__init__(meter, tenant, job.estimate, images, hold=Hold.for_job(job.job_id), model=job.model)
        self.jobs = jobs
        self.job = job
        self.reservation = Reservation(**job.reservation) if job.reservation else None
        self.generated: tuple[int, float | None] | None = None

    def reserve(self) -> None:
        if self.reservation is None:  # released by an earlier attempt: hold the budget again
            super().reserve()
            if self.reservation is not None:
                self.jobs.hold(self.job.job_id, vars(self.reservation))

    def settle(self, images: int, reported_balance: float | None, later: Deferrer | None = None) -> None:
        self.generated = (images, reported_balance)  # charged in finalize(), after the job is COMPLETED

    def finalize(self) -> None:
        if self.generated is not None:
            super().settle(*self.generated)

    def release(self, failed: bool = True) -> None:
        if self.reservation is not None:
            super().release(failed)
            self.jobs.hold(self.job.job_id, None)


@contextmanager
def counting_rejections(
    tenant: Tenant | None, meter: UsageLedger | None, later: Deferrer | None = None
) -> Iterator[None]:
    """A request refused by validation, its budget or the content policy still counts for its tenant (as rejected,
    never charged). `later`: the count can follow the refusal (see `after_response`)."""
    try:
        yield
    except (RequestInvalid, BudgetExceeded, PromptRefused) as refusal:
        event = Counted.REFUSED if isinstance(refusal, PromptRefused) else Counted.REJECTED
        count(tenant, meter, event, later)
        raise


def count(tenant: Tenant | None, meter: UsageLedger | None, event: Counted, later: Deferrer | None = None) -> None:
    """Count an event for the tenant, after the answer where it can follow it; a failure to count is logged only."""
    if tenant and meter:
        (later or RunNow()).defer(TenantBilling.best_effort, lambda: meter.record(tenant, event))


def billing_for(request: Txt2ImgRequest, caller: Caller, ledger: UsageLedger | None, hold: Hold) -> Billing:
    """How a request is billed: for its tenant, its estimated cost reserved under `hold` (who holds it, until when),
    with the month's figures if they were read with the tenant's profile; not at all where metering is off."""
    if caller.tenant is None or ledger is None:
        return NoBilling()
    return TenantBilling(ledger, caller.tenant, estimate(request), request.count, caller.usage, hold, request.slug)


def request_hold(request_id: str, deadline: float, margin: float, grace: float) -> Hold:
    """The reservation of a request is its own until Lambda has surely ended its invocation (the deadline is the
    invocation's end less the `margin` kept for answering), plus a `grace`; then the sweeper may take it back."""
    return Hold.for_request(request_id, deadline - time.monotonic() + margin, grace)
