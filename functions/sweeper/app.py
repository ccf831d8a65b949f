"""Reservation sweeper: on a schedule, gives back the budget reservations of requests that died before settling
(see `segmind_proxy.flows.sweeper`), so a crash, a timeout or an out-of-memory kill never keeps a tenant's budget held."""

from dataclasses import asdict
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from segmind_proxy.composition import reservation_sweeper
from segmind_proxy.observability import MetricUnit, logger, metrics, tracer


@logger.inject_lambda_context(log_event=False, clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    sweeper = reservation_sweeper()
    if sweeper is None:  # metering off: no reservations exist
        return {"items": 0}
    report = sweeper.sweep()
    metrics.add_metric(name="ReservationsTakenBack", unit=MetricUnit.Count, value=report.released + report.settled)
    if report.items:
        logger.info("Reservations swept", extra=asdict(report))
    return asdict(report)
