"""Coalescing leases in memory, with the conditional put of adapters/dynamo_leases.py: one owner per key until its
lease expires on the injected clock; an owner may take its own lease again; only the owner releases it."""

from __future__ import annotations

import threading
import time

from segmind_proxy.domain.errors import Dependency
from segmind_proxy.domain.ports import Clock
from tests.fakes.errors import Breakable


class FakeLeases(Breakable):
    """`Leases`; `leases` maps each key to (owner, until)."""

    dependency = Dependency.LEASES

    def __init__(self, clock: Clock = time.time) -> None:
        super().__init__()
        self.leases: dict[str, tuple[str, float]] = {}
        self._clock = clock
        self._lock = threading.Lock()

    def acquire(self, key: str, owner: str, seconds: float) -> bool:
        self._may_fail("acquire")
        with self._lock:
            now = self._clock()
            current = self.leases.get(key)
            if current is not None and current[1] >= now and current[0] != owner:
                return False
            self.leases[key] = (owner, now + seconds)
            return True

    def held(self, key: str) -> bool:
        self._may_fail("held")
        with self._lock:
            current = self.leases.get(key)
            return current is not None and current[1] >= self._clock()

    def release(self, key: str, owner: str) -> None:
        self._may_fail("release")
        with self._lock:
            current = self.leases.get(key)
            if current is not None and current[0] == owner:
                del self.leases[key]
