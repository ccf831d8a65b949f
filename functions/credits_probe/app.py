"""Credits probe: on a schedule, reads Segmind's balance and publishes `RemainingCredits`, so the metric (and the
low-credit alarm) stays fresh when there is no traffic. Same key handling and error mapping as the API."""

import time
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from segmind_proxy.api import segmind_errors
from segmind_proxy.composition import upstream
from segmind_proxy.domain.errors import DomainError
from segmind_proxy.observability import MetricUnit, logger, metrics, tracer
from segmind_proxy.settings import get_settings


@logger.inject_lambda_context(log_event=False, clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    deadline = time.monotonic() + context.get_remaining_time_in_millis() / 1000 - get_settings().deadline_margin_seconds
    try:
        balance = upstream().credits(deadline=deadline)
    except DomainError as error:  # mapped, counted (UpstreamErrors) and logged without the key, as in the API
        status = segmind_errors.status(error)
        logger.error("Credits probe failed", extra={"status": status, "kind": error.kind, "reason": error.message})
        metrics.add_metric(name="CreditsProbeFailures", unit=MetricUnit.Count, value=1)
        return {"ok": False, "status": status, "error": error.message}
    metrics.add_metric(name="RemainingCredits", unit=MetricUnit.Count, value=balance["credits"])
    metrics.add_metric(name="FreeCredits", unit=MetricUnit.Count, value=balance["free_credits"])
    logger.info("Segmind balance", extra=balance)
    return {"ok": True, **balance}
