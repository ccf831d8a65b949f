"""Work done after the answer has gone, held open by a Lambda internal extension.

Lambda returns a function's response as soon as the handler returns, but freezes the execution environment only
once the runtime and every registered extension have asked for their next event. An extension thread that asks
only when the invocation's deferred work is finished therefore lets that work run after the client has its answer
(billed, but off the client's clock). Registration is possible only during init, so `start` runs at import.

Without the Extensions API (unit tests, scripts, a failed registration), deferred work simply runs at once: nothing
is ever dropped for want of an extension.
"""

from __future__ import annotations

import functools
import json
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import Any

from segmind_proxy.observability import logger, metrics

EXTENSION_NAME = "segmind-proxy-after-response"
_API = "2020-01-01/extension"


def _guarded(task: Callable[..., Any], *args: Any) -> None:
    """Deferred tasks report their own failures; anything else they raise is logged, never lost silently."""
    try:
        task(*args)
    except Exception:
        logger.exception("Deferred work failed", extra={"task": getattr(task, "__qualname__", repr(task))})


def _untraced(runtime_api: str) -> None:
    """With DETAILED_TRACING, the X-Ray SDK traces every http.client call: the extension's long polls are not any
    invocation's work."""
    if "aws_xray_sdk.ext.httplib" in sys.modules:
        from aws_xray_sdk.ext.httplib import add_ignored

        add_ignored(hostname=runtime_api.rsplit(":", 1)[0], urls=[f"/{_API}/register", f"/{_API}/event/next"])


class AfterResponse:
    def __init__(self, workers: int = 4) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="after-response")
        self._changed = threading.Condition()
        self._active = False
        self._current: list[tuple[Callable[..., Any], tuple[Any, ...]]] | None = None  # deferred, not yet started
        # Deferred by invocations that have ended, until the extension has waited for them. Lambda runs one
        # invocation at a time, so whatever is here belongs to the one the extension was last told of: matching
        # on request ids would add nothing but a way to hold the environment until the deadline by mistake.
        self._ended: list[Future[None]] | None = None

    @property
    def active(self) -> bool:
        return self._active

    def start(self, runtime_api: str) -> bool:
        """Register the extension and start its thread; False (work then runs at once) if Lambda refuses."""
        _untraced(runtime_api)
        request = urllib.request.Request(
            f"http://{runtime_api}/{_API}/register",
            data=json.dumps({"events": ["INVOKE"]}).encode(),
            headers={"Lambda-Extension-Name": EXTENSION_NAME, "Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                identifier = response.headers["Lambda-Extension-Identifier"]
        except OSError:
            logger.warning("Extensions API refused registration: deferred work runs before answering", exc_info=True)
            return False
        if not identifier:
            logger.warning("Extensions API gave no extension identifier: deferred work runs before answering")
            return False
        self._active = True
        logger.info(
            "Extension registered: inline answers are cached after they go", extra={"extension": EXTENSION_NAME}
        )
        threading.Thread(target=self._run, args=(runtime_api, identifier), name=EXTENSION_NAME, daemon=True).start()
        return True

    @contextmanager
    def invocation(self) -> Iterator[None]:
        """Wraps the whole handler, outside its metrics flush. Work deferred inside it starts when it ends: never
        alongside the handler's own work, its CPU or its metrics flush."""
        if not self._active:
            yield
            return
        with self._changed:
            self._current = []
        try:
            yield
        finally:
            with self._changed:
                started = [self._pool.submit(_guarded, task, *args) for task, args in self._current or []]
                self._ended, self._current = (self._ended or []) + started, None
                self._changed.notify_all()

    def holding(self, handler: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        """Decorator form of `invocation` for a Lambda handler; put it outermost."""

        @functools.wraps(handler)
        def held(event: Any, context: Any) -> Any:
            with self.invocation():
                return handler(event, context)

        return held

    def defer(self, task: Callable[..., Any], *args: Any) -> None:
        """Run `task` on a worker thread once the handler has returned; the environment stays up until it ends.
        Outside a held invocation, run it now."""
        with self._changed:
            if self._active and self._current is not None:
                self._current.append((task, args))
                return
        _guarded(task, *args)

    def _run(self, runtime_api: str, identifier: str) -> None:
        next_event = urllib.request.Request(
            f"http://{runtime_api}/{_API}/event/next", headers={"Lambda-Extension-Identifier": identifier}
        )
        while True:
            try:
                with urllib.request.urlopen(next_event) as response:  # blocks until the next invocation
                    event = json.load(response)
            except (OSError, ValueError):
                # Lambda cannot freeze or reuse the environment without this thread; it is replaced at the timeout.
                logger.exception("Extensions API failed: deferred work runs before answering from now on")
                self._active = False
                return
            if event.get("eventType") == "INVOKE":
                self.wait_for(event.get("requestId", ""), event.get("deadlineMs", 0) / 1000)

    def wait_for(self, request_id: str, deadline: float) -> bool:
        """Hold until the invocation has ended and its deferred work is done (or the deadline, epoch seconds,
        passes); then emit the metrics that work recorded after the handler's own flush."""
        with self._changed:
            ended = self._changed.wait_for(lambda: self._ended is not None, max(0.0, deadline - time.time()))
            tasks, self._ended = self._ended or [], None
        _, unfinished = wait(tasks, timeout=max(0.0, deadline - time.time()))
        if not ended or unfinished:
            logger.error(
                "Deferred work unfinished at the invocation deadline",
                extra={"request_id": request_id, "handler_ended": ended, "unfinished": len(unfinished)},
            )
        if metrics.metric_set:
            metrics.flush_metrics()
        return ended and not unfinished


AFTER_RESPONSE = AfterResponse()
