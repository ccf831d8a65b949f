"""The deferrer for paths that must finish their work before answering (the async worker, scripts, tests)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from segmind_proxy.observability import logger


class RunNow:
    """Runs deferred work at once. A task's failure is logged, never raised into the request that deferred it."""

    def defer(self, task: Callable[..., Any], *args: Any) -> None:
        try:
            task(*args)
        except Exception:
            logger.exception("Deferred work failed", extra={"task": getattr(task, "__qualname__", repr(task))})
