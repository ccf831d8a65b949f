"""How fast the (shared, noisy) host was during a benchmark, so runs on different days can be compared."""

from __future__ import annotations

import time


def host_speed_ms() -> int:
    """A fixed piece of pure-Python work, timed: how fast this (shared, noisy) host was, to compare runs by."""
    started = time.perf_counter()
    total = 0
    for step in range(5_000_000):
        total += step
    return round((time.perf_counter() - started) * 1000)
