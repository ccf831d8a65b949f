"""A clock that moves only when told (or when someone sleeps on it)."""

from __future__ import annotations

import threading


class FakeClock:
    """A `Clock` (callable, seconds) whose `sleep` returns at once, having moved the time on; records each sleep."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += seconds

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds
