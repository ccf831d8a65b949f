"""Taking back reservations whose holders are gone: run on a schedule (ReservationSweeperFunction).

A request's reservation is held until its invocation's end plus a grace (see `domain.usage.Hold`); Lambda has ended the
invocation by then, so an entry still open past that time belongs to a request that died (timeout, crash, out of
memory) before it could settle or release. It is released as a failed generation: nothing was delivered, nothing
is charged. A v2 job's reservation lives across SQS deliveries, so the job store is asked instead: a job still
queued or running keeps it a while longer, a completed one is charged for its images (its worker died between
completing it and settling), and a failed or vanished one gives it back. Every step is a conditional update that
applies once, so a sweep racing a live settlement, or another sweep, never counts anything twice."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from segmind_proxy.domain.jobs import TERMINAL, JobStatus
from segmind_proxy.domain.ports import JobStore, UsageLedger
from segmind_proxy.domain.usage import JOB_HOLD_SECONDS, JOB_HOLDER_PREFIX, Reservation
from segmind_proxy.observability import logger


@dataclass
class SweepReport:
    items: int = 0  # usage items that were due
    released: int = 0  # reservations given back (their requests or jobs died, or failed)
    settled: int = 0  # completed jobs' reservations, charged
    extended: int = 0  # jobs still queued or running
    still_held: int = 0  # entries not yet due on the items swept


class ReservationSweeper:
    def __init__(self, meter: UsageLedger, jobs: JobStore | None, clock: Callable[[], float] = time.time) -> None:
        self.meter = meter
        self.jobs = jobs
        self._clock = clock

    def sweep(self) -> SweepReport:
        report = SweepReport()
        now = self._clock()
        for tenant_id, month in self.meter.due(now):
            report.items += 1
            self._sweep_item(tenant_id, month, now, report)
        return report

    def _sweep_item(self, tenant_id: str, month: str, now: float, report: SweepReport) -> None:
        held, _, _ = self.meter.open_reservations(tenant_id, month)
        left: list[int] = []
        for reservation, until in held.items():
            if until > now:
                left.append(until)
                report.still_held += 1
            elif (extended := self._take_back(reservation, now, report)) is not None:
                left.append(extended)
        # Out of the index once nothing is open, else due again at the earliest hold left.
        self.meter.reschedule(tenant_id, month, seen_open=len(left), next_due=min(left) if left else None)

    def _take_back(self, reservation: Reservation, now: float, report: SweepReport) -> int | None:
        """Resolve one abandoned reservation; the new hold time if a live job keeps it."""
        job_id = reservation.holder.removeprefix(JOB_HOLDER_PREFIX)
        job = self.jobs.get(job_id) if self.jobs and reservation.holder.startswith(JOB_HOLDER_PREFIX) else None
        if job is not None and job.status not in TERMINAL:
            until = int(now) + JOB_HOLD_SECONDS
            if self.meter.extend(reservation, until):
                report.extended += 1
                return until
            return None
        if job is not None and job.status is JobStatus.COMPLETED and job.result:
            images = int(job.result.get("count", 0))
            asked = reservation.images or int(job.result.get("asked", 1)) or 1  # what the reservation was made for
            if self.meter.settle(reservation, job.estimate * images / asked, images) is not None:
                report.settled += 1
            return None
        if self.meter.release(reservation, failed=True) is not None:
            report.released += 1
            logger.warning(
                "Took back a reservation whose holder is gone",
                extra={
                    "tenant_id": reservation.tenant_id,
                    "holder": reservation.holder,
                    "credits": reservation.credits,
                },
            )
        return None
