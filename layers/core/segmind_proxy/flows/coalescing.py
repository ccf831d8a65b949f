"""Coalescing: identical requests (same namespace and cache key) share one upstream call across invocations. The
one that takes the lease generates and stores; the others wait for its images in the store and are served them as
hits. Lease trouble never blocks a request: it generates uncoalesced."""

from __future__ import annotations

import time
from collections.abc import Callable

from segmind_proxy.domain.errors import CoalesceTimeout, Outage
from segmind_proxy.domain.images import ImageResult
from segmind_proxy.domain.ports import Clock, Leases
from segmind_proxy.observability import MetricUnit, logger, metrics

WAIT_FIRST_POLL_SECONDS = 0.1
# A waiter answers up to one pause after the images land. Segmind takes 2 to 5 s, so a pause growing to 1 s made a
# burst's copies answer about 0.65 s after the request they waited for (p50, `make bench-peers`); at 0.25 s, a
# 5 s wait costs about 20 looks (an S3 read and a DynamoDB read each) instead of 8, a small price beside the image.
WAIT_MAX_POLL_SECONDS = 0.25


class Coalescer:
    def __init__(
        self, leases: Leases, clock: Clock = time.monotonic, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self.leases = leases
        self._clock = clock
        self._sleep = sleep

    def acquire(self, key: str, owner: str, deadline: float) -> bool:
        """True: we generate."""
        try:
            # The lease lasts as long as this invocation can: a crashed owner frees it by then.
            return self.leases.acquire(key, owner, max(1.0, deadline - self._clock()) + 5)
        except Outage:
            logger.warning("Lease unavailable; generating without coalescing", exc_info=True)
            return True

    def release(self, key: str, owner: str) -> None:
        try:
            self.leases.release(key, owner)
        except Outage:
            logger.warning("Could not release lease; it expires by itself", exc_info=True)

    def wait_for(self, key: str, deadline: float, look: Callable[[], ImageResult | None]) -> ImageResult | None:
        """Wait for the lease holder's images, found by `look`. None: the holder is gone without them (take over)."""
        pause = WAIT_FIRST_POLL_SECONDS
        while self._clock() + pause < deadline:
            self._sleep(pause)
            pause = min(WAIT_MAX_POLL_SECONDS, pause * 1.5)
            shared = look()
            if shared is not None:
                metrics.add_metric(name="CoalescedRequests", unit=MetricUnit.Count, value=1)
                shared.coalesced = True
                return shared
            try:
                if not self.leases.held(key):
                    return look()  # a last look: it may have just landed
            except Outage:
                return None
        raise CoalesceTimeout("Timed out waiting for an identical request's images; retry")
