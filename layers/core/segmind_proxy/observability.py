"""Powertools Logger, Tracer and Metrics, shared by every module of a function."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric

logger = Logger()
tracer = Tracer()
metrics = Metrics()

__all__ = ["MetricUnit", "logger", "metrics", "record_upstream_error", "tracer"]


def record_upstream_error(kind: str) -> None:
    """One `UpstreamErrors` data point with the failure kind as a (low-cardinality) dimension, plus the total."""
    metrics.add_metric(name="UpstreamErrorsTotal", unit=MetricUnit.Count, value=1)
    with single_metric(name="UpstreamErrors", unit=MetricUnit.Count, value=1, namespace=metrics.namespace) as metric:
        metric.add_dimension(name="ErrorKind", value=kind)
