"""Local Lambda: each function gets up to `concurrency` worker processes, each a 'container' that imports the handler
once and serves one invocation at a time, as Lambda does. Module globals are per container, never shared. Each
container serves the Extensions API too, so an internal extension's work after the response runs as on Lambda: the
container is busy until that work is done, and an invocation goes to an idle container (or a new one) meanwhile.
An invocation that outlives the function's timeout, its extensions' work included, ends its container, as on Lambda."""

from __future__ import annotations

import importlib
import multiprocessing
import os
import sys
import threading
import time
import uuid
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from .extensions_api import ExtensionsApi, deadline_ms
from .template import FunctionSpec

_handler: Any = None
_extensions: ExtensionsApi | None = None
_watchdog: threading.Timer | None = None
# The watchdog and the end of an invocation's extension work can meet at its deadline (the after-answer extension
# gives up right then): whichever takes this first decides, so a container is never handed back while ending.
_ending = threading.Lock()
_finished: set[str] = set()
_started = 0.0  # the monotonic time the current invocation started at
# Timers may wake a little early: work that ends this close to the deadline ended at it.
DEADLINE_SLACK_S = 0.02


class LocalContext:
    """The subset of the Lambda context object that handlers and Powertools use."""

    def __init__(self, function_name: str, memory_mb: int, timeout_s: int) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = memory_mb
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{function_name}"
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def _init_container(code_dir: str, handler: str, environment: dict[str, str]) -> None:
    global _handler, _extensions
    os.environ.update(environment)
    name = environment.get("AWS_LAMBDA_FUNCTION_NAME", "function")
    _extensions = ExtensionsApi(name, handler)
    os.environ["AWS_LAMBDA_RUNTIME_API"] = _extensions.address
    run_dir = environment.get("LOCAL_STACK_RUN_DIR")
    if run_dir:  # lets tests find (and kill) a function's containers, as Lambda may lose one
        Path(run_dir, f"{name}.{os.getpid()}.pid").touch()
    sys.path.insert(0, code_dir)
    module_name, function_name = handler.rsplit(".", 1)
    _handler = getattr(importlib.import_module(module_name), function_name)
    _extensions.init_done()


def _invoke(event: dict[str, Any], name: str, memory_mb: int, timeout_s: int) -> Any:
    global _watchdog, _started
    _started = time.monotonic()
    context = LocalContext(name, memory_mb, timeout_s)
    # Lambda's timeout covers the whole invoke phase: the handler and its extensions' work after the response.
    # Counted from here, not from the submit, as Lambda does not count the init phase.
    _finished.clear()
    _watchdog = threading.Timer(timeout_s, _time_out, (context.aws_request_id, timeout_s))
    _watchdog.daemon = True
    _watchdog.start()
    if _extensions is not None:  # the previous invocation's work after its response ends first, as on Lambda
        _extensions.invoke(context.aws_request_id, deadline_ms(timeout_s), context.invoked_function_arn, timeout_s)
    return _handler(event, context)


def _time_out(request_id: str, timeout_s: float) -> None:
    """As Lambda: the log line, then the environment is gone (its next invocation starts a fresh one)."""
    with _ending:  # held until the process is gone
        if request_id in _finished:  # its work ended in time, just now
            return
        print(f"{request_id} Task timed out after {timeout_s:.2f} seconds", file=sys.stderr, flush=True)
        os._exit(1)


def _warm() -> int:
    return os.getpid()


def _extensions_done(timeout_s: float) -> bool:
    """Until the container's extensions have finished the invocation that just returned (Lambda's freeze point);
    the watchdog ends the container first if that outlasts the invocation's timeout."""
    done = _extensions is None or _extensions.wait_idle(timeout_s)
    if not done or _watchdog is None:
        return done
    if time.monotonic() - _started >= timeout_s - DEADLINE_SLACK_S:
        # The extensions gave up at the deadline (the after-answer extension stops waiting then) and asked for the
        # next event just before the watchdog's thread ran: the invocation still outlived its timeout, as the
        # watchdog would have found, whichever thread a busy machine ran first.
        _time_out(_watchdog.args[0], timeout_s)
    with _ending:  # if the watchdog took it first, the process ends here and the container is lost
        _finished.add(_watchdog.args[0])
        _watchdog.cancel()
    return True


class _Container:
    """One execution environment: a process started on first use that imports the handler, then serves invocations."""

    def __init__(self, spec: FunctionSpec, environment: dict[str, str]) -> None:
        self.process = ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_container,
            initargs=(str(spec.code_dir), spec.handler, environment),
        )


class LocalFunction:
    def __init__(self, spec: FunctionSpec, environment: dict[str, str], concurrency: int) -> None:
        self.spec = spec
        self._environment = environment
        self._concurrency = concurrency
        self._changed = threading.Condition()
        self._idle: list[_Container] = []  # the most recently used last: it is taken first, as the warmest
        self._containers: set[_Container] = set()
        self._closed = False
        # Waits for a free container on behalf of each invocation, so `invoke` answers at once with a future.
        self._router = ThreadPoolExecutor(max_workers=64, thread_name_prefix=f"{spec.logical_id}-invoke")

    def warm_up(self) -> Future[int]:
        """Start one container now, so the first request does not pay the imports. Further containers start when
        concurrent invocations need them (as Lambda's do): starting them all up front took seconds of CPU."""
        return self._router.submit(self._run, _warm)

    def invoke(self, event: dict[str, Any]) -> Future[Any]:
        """Run on an idle container, else on a new one up to the concurrency, else once one is free. A killed
        container (as Lambda may lose one) fails its invocation and is replaced by a fresh one when needed."""
        return self._router.submit(self._run, _invoke, event, self.spec.logical_id, self.spec.memory, self.spec.timeout)

    def _run(self, call: Any, *args: Any) -> Any:
        while True:
            container = self._take()
            try:
                pending = container.process.submit(call, *args)
                break
            except (BrokenProcessPool, RuntimeError):  # it died while idle: Lambda would not have picked it
                self._lose(container)
        try:
            result = pending.result()
        except BrokenProcessPool:
            self._lose(container)
            raise
        except BaseException:
            self._free_when_done(container)
            raise
        self._free_when_done(container)
        return result

    def _take(self) -> _Container:
        with self._changed:
            while not self._closed and not self._idle and len(self._containers) >= self._concurrency:
                self._changed.wait()
            if self._closed:  # no container is started, and no invocation waits, once the function is shut down
                raise RuntimeError(f"{self.spec.logical_id} is shut down")
            if self._idle:
                return self._idle.pop()
            container = _Container(self.spec, self._environment)
            self._containers.add(container)
            return container

    def _free_when_done(self, container: _Container) -> None:
        """The container takes its next invocation only once its extensions are done with this one."""
        try:
            done = container.process.submit(_extensions_done, float(self.spec.timeout))
        except (BrokenProcessPool, RuntimeError):
            self._lose(container)
            return
        done.add_done_callback(lambda finished: self._after_extensions(container, finished))

    def _after_extensions(self, container: _Container, finished: Future[bool]) -> None:
        """Idle again if its extensions finished in time; lost if it died, or its watchdog ended it."""
        if not finished.cancelled() and finished.exception() is None and finished.result():
            self._give_back(container)
        else:
            self._lose(container)

    def _give_back(self, container: _Container) -> None:
        with self._changed:
            if container in self._containers:
                self._idle.append(container)
                self._changed.notify()

    def _lose(self, container: _Container) -> None:
        with self._changed:
            self._containers.discard(container)
            self._changed.notify()
        container.process.shutdown(wait=False, cancel_futures=True)

    def shutdown(self) -> None:
        self._router.shutdown(wait=False, cancel_futures=True)
        with self._changed:
            containers, self._containers, self._idle = list(self._containers), set(), []
            self._closed = True
            self._changed.notify_all()
        for container in containers:
            container.process.shutdown(wait=False, cancel_futures=True)
