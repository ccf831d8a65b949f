"""The local Lambda runtime routes as Lambda does: an environment still doing work after its response (an internal
extension's) takes no invocation; another does, or a new one starts. A lost environment is replaced, and one whose
invocation outlives the function's timeout (its work after the response included) is ended."""

import os
import signal
import textwrap
import time
from concurrent.futures import wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pytest

from local.lambda_runtime import LocalFunction
from local.template import FunctionSpec

HANDLER = """
import os, time
from segmind_proxy.adapters.after_response import AfterResponse

held = AfterResponse()
held.start(os.environ["AWS_LAMBDA_RUNTIME_API"])


@held.holding
def handler(event, context):
    time.sleep(event.get("work", 0))
    held.defer(time.sleep, event["hold"])  # work after the response, as the API function's cache write
    return os.getpid()
"""
ENVIRONMENT = {"SEGMIND_API_KEY_SECRET": "unused", "POWERTOOLS_LOG_LEVEL": "WARNING", "AWS_LAMBDA_FUNCTION_NAME": "F"}


def local_function(code_dir: Path, *, timeout: int = 30, concurrency: int = 2) -> LocalFunction:
    (code_dir / "app.py").write_text(textwrap.dedent(HANDLER))
    spec = FunctionSpec("F", code_dir, "app.handler", timeout, 128, {})
    return LocalFunction(spec, ENVIRONMENT, concurrency=concurrency)


@pytest.fixture
def function(tmp_path: Path):
    started = local_function(tmp_path)
    yield started
    started.shutdown()


def test_a_container_busy_after_its_response_takes_no_invocation(function):
    both = [function.invoke({"hold": 0.2}) for _ in range(2)]  # starts (and warms) both containers
    wait(both, timeout=60)
    time.sleep(0.5)
    busy = function.invoke({"hold": 1.5}).result(timeout=10)
    started = time.monotonic()
    other = function.invoke({"hold": 0}).result(timeout=10)
    assert other != busy and time.monotonic() - started < 1.0  # not queued behind the busy one's deferred work
    assert {f.result() for f in both} == {busy, other}  # and no third container: two were free


def test_a_killed_container_is_replaced(function):
    first = function.invoke({"hold": 0}).result(timeout=60)
    time.sleep(0.2)
    os.kill(first, signal.SIGKILL)
    time.sleep(0.5)
    answers = {function.invoke({"hold": 0}).result(timeout=60) for _ in range(3)}
    assert first not in answers


def test_an_invocation_waiting_for_a_container_fails_at_shutdown_and_none_starts(tmp_path: Path):
    function = local_function(tmp_path, concurrency=1)
    busy = function.invoke({"hold": 5})  # the only container stays busy after its answer
    busy.result(timeout=60)
    waiting = function.invoke({"hold": 0})
    time.sleep(0.3)
    assert not waiting.done()
    function.shutdown()
    with pytest.raises(RuntimeError, match="shut down"):
        waiting.result(timeout=5)
    assert function._containers == set()


@pytest.fixture
def one_second(tmp_path: Path):
    started = local_function(tmp_path, timeout=1, concurrency=1)
    yield started
    started.shutdown()


def test_an_invocation_past_its_timeout_ends_its_container(one_second, capfd):
    one_second.warm_up().result(timeout=60)  # the import (Lambda's init phase) is not counted in the timeout
    first = one_second.invoke({"hold": 0}).result(timeout=10)
    started = time.monotonic()
    with pytest.raises(BrokenProcessPool):
        one_second.invoke({"work": 5, "hold": 0}).result(timeout=10)
    assert time.monotonic() - started < 3  # ended at its 1 s timeout, not after its 5 s of work
    assert "Task timed out after 1.00 seconds" in capfd.readouterr().err
    assert one_second.invoke({"hold": 0}).result(timeout=60) != first  # the next one runs in a fresh container


def test_work_after_the_response_counts_in_the_timeout(one_second):
    first = one_second.invoke({"hold": 0.3}).result(timeout=10)
    assert one_second.invoke({"hold": 0}).result(timeout=10) == first  # done within its timeout: kept
    assert one_second.invoke({"hold": 5}).result(timeout=10) == first  # answered; its deferred work runs on
    assert one_second.invoke({"hold": 0}).result(timeout=60) != first  # and was cut at the timeout, with its container
