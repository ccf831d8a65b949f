"""Local Lambda: each function gets a pool of worker processes, each a 'container' that imports the handler once
and serves one invocation at a time, as Lambda does. Module globals are per container, never shared. Each
container serves the Extensions API too, so an internal extension's work after the response runs as on Lambda."""

from __future__ import annotations

import importlib
import multiprocessing
import os
import sys
import threading
import time
import uuid
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from .extensions_api import ExtensionsApi, deadline_ms
from .template import FunctionSpec

_handler: Any = None
_extensions: ExtensionsApi | None = None


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
    context = LocalContext(name, memory_mb, timeout_s)
    if _extensions is not None:  # the previous invocation's work after its response ends first, as on Lambda
        _extensions.invoke(context.aws_request_id, deadline_ms(timeout_s), context.invoked_function_arn, timeout_s)
    return _handler(event, context)


def _warm() -> int:
    return os.getpid()


class LocalFunction:
    def __init__(self, spec: FunctionSpec, environment: dict[str, str], concurrency: int) -> None:
        self.spec = spec
        self._environment = environment
        self._concurrency = concurrency
        self._lock = threading.Lock()
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self._concurrency,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_container,
            initargs=(str(self.spec.code_dir), self.spec.handler, self._environment),
        )

    def warm_up(self) -> Future[int]:
        """Start one container now, so the first request does not pay the imports. Further containers start when
        concurrent invocations need them (as Lambda's do): starting them all up front took seconds of CPU."""
        return self._pool.submit(_warm)

    def invoke(self, event: dict[str, Any]) -> Future[Any]:
        """Run on a free container. A killed container (as Lambda may lose one) is replaced by fresh ones."""
        args = (_invoke, event, self.spec.logical_id, self.spec.memory, self.spec.timeout)
        with self._lock:
            try:
                return self._pool.submit(*args)
            except BrokenProcessPool:
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = self._new_pool()
                return self._pool.submit(*args)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
