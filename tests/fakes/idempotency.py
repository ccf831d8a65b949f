"""Idempotency-Key records in memory, as adapters/idempotency.py keeps them: one outcome per (scope, key), computed
once; the same key with another body is refused; a failed first attempt is not remembered."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from typing import Any

from segmind_proxy.domain.errors import Dependency, IdempotencyKeyReused
from tests.fakes.errors import Breakable


class FakeIdempotency(Breakable):
    """An `Idempotency`; `records` maps (scope, key) to (the body's SHA-256, the outcome)."""

    dependency = Dependency.JOB_STORE

    def __init__(self) -> None:
        super().__init__()
        self.records: dict[tuple[tuple[str, str], str], tuple[str, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def run_once(
        self, key: str, scope: tuple[str, str], body: bytes | None, produce: Callable[[], dict[str, Any]], context: Any
    ) -> tuple[dict[str, Any], bool]:
        self._may_fail("run_once")
        digest = hashlib.sha256(body or b"").hexdigest()
        with self._lock:
            recorded = self.records.get((scope, key))
        if recorded is not None:
            if recorded[0] != digest:
                raise IdempotencyKeyReused("This Idempotency-Key was used with a different request body")
            return recorded[1], True
        outcome = produce()  # an error leaves nothing recorded: a retry runs again
        with self._lock:
            self.records[(scope, key)] = (digest, outcome)
        return outcome, False
