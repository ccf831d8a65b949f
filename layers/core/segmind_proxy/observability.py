"""Powertools Logger, Tracer and Metrics, shared by every module of a function."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from segmind_proxy.settings import get_settings

logger = Logger()
metrics = Metrics()
# An invocation that records no metric (a health check, the docs, a preflight, a refusal) is normal here, not the
# mistake Powertools warns of at every such invocation.
warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)


class Untraced:
    """The Tracer's decorators, doing nothing: the X-Ray SDK's import (it builds a botocore client for sampling)
    costs ~200 ms of every cold start, paid only where detailed tracing is asked for."""

    def capture_method(self, method: Callable | None = None, **_: Any) -> Any:
        return method if method is not None else (lambda decorated: decorated)

    capture_lambda_handler = capture_method


def _tracer() -> Any:
    if not get_settings().detailed_tracing or not os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
        return Untraced()
    from aws_lambda_powertools import Tracer

    return Tracer()


tracer = _tracer()

__all__ = ["MetricUnit", "logger", "metrics", "record_upstream_error", "tracer"]


def record_upstream_error(kind: str) -> None:
    """One `UpstreamErrors` data point with the failure kind as a (low-cardinality) dimension, plus the total."""
    metrics.add_metric(name="UpstreamErrorsTotal", unit=MetricUnit.Count, value=1)
    with single_metric(name="UpstreamErrors", unit=MetricUnit.Count, value=1, namespace=metrics.namespace) as metric:
        metric.add_dimension(name="ErrorKind", value=kind)
