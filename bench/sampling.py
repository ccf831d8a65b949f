"""How the benchmarks take their samples: each timed call after a pause, and percentiles of the times."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TypeVar

Result = TypeVar("Result")

# Between timed requests: a request's work after its answer (which on AWS runs on DynamoDB's and S3's machines)
# would otherwise compete with the next request for moto and the 2 cores, and be counted into its latency.
GAP_S = int(os.environ.get("BENCH_GAP_MS", "100")) / 1000


def after_gap(call: Callable[[], Result]) -> tuple[float, Result]:
    """The ms `call` took, made after the pause, and what it returned."""
    time.sleep(GAP_S)
    started = time.perf_counter()
    result = call()
    return (time.perf_counter() - started) * 1000, result


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))], 1)
