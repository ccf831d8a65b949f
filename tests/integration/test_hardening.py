"""Faults found from outside, through the local stack: a slow upstream body, a container lost mid-generation, an
upstream that answers another format than asked, or fewer images. Nobody is charged for nothing, and nothing held
for a request outlives it."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.integration.conftest import SLUG, RunningStack, start_stack, stop_stack

BODY = {"prompt": "hardening", "steps": 4, "width": 512, "height": 512, "seed": 7, "base64": False}


@pytest.fixture(scope="module")
def short(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """A stack whose API function times out after 10 s (the template's minimum) and whose reservation sweeper runs
    every second with no grace: a request that died is swept about 11 s after it started."""
    run_dir = tmp_path_factory.mktemp("run")
    running = start_stack(
        {
            "PARAMETER_OVERRIDES": "FunctionTimeoutSeconds=10 ReservationGraceSeconds=0",
            "LOCAL_SCHEDULE_SECONDS": "1",
            "LOCAL_STACK_RUN_DIR": str(run_dir),
        }
    )
    running.run_dir = run_dir  # type: ignore[attr-defined]
    yield running
    stop_stack(running.process)


def tenant_key(stack: RunningStack, name: str) -> str:
    return stack.cli("tenants", "create", name, "--plan", "enterprise", "--budget-credits", "5")["api_key"]


def usage(stack: RunningStack, key: str) -> dict:
    """The tenant's figures; asked again while the answer is no usage report (a request that reached a container
    being killed is answered 502, as on Lambda)."""
    for _ in range(20):
        answer = requests.get(f"{stack.base}/v1/usage", headers={"x-api-key": key}, timeout=30)
        if answer.status_code == 200:
            return answer.json()
        time.sleep(0.5)
    raise AssertionError(f"no usage report: {answer.status_code} {answer.text}")


def post(stack: RunningStack, key: str, body: dict, **headers: str) -> requests.Response:
    return requests.post(f"{stack.base}/v1/{SLUG}", json=body, headers={"x-api-key": key, **headers}, timeout=60)


def test_a_body_trickled_past_the_deadline_is_a_504_that_charges_nothing(short: RunningStack):
    key = tenant_key(short, "trickled")
    short.fake_config(faults=[{"trickle_seconds": 20}])
    started = time.monotonic()
    answer = post(short, key, BODY | {"prompt": "trickled"})
    assert answer.status_code == 504, answer.text
    assert "too slow" in answer.json()["error"]
    assert time.monotonic() - started < 9.5  # the function's deadline (10 s less its margin), not the runtime's kill
    figures = usage(short, key)
    assert figures["credits_reserved"] == 0 and figures["credits_spent"] == 0
    assert (figures["requests"], figures["failed_generations"], figures["images_generated"]) == (1, 1, 0)


def test_a_container_killed_mid_generation_gives_its_reservation_back(short: RunningStack):
    key = tenant_key(short, "killed")
    short.fake_config(latency_ms=6000)
    calls = short.fake_stats()["calls"]
    answers: list[int] = []
    request = threading.Thread(target=lambda: answers.append(post(short, key, BODY | {"prompt": "killed"}).status_code))
    try:
        request.start()
        deadline = time.monotonic() + 20
        while short.fake_stats()["calls"] == calls and time.monotonic() < deadline:
            time.sleep(0.05)  # Segmind has the request: the reservation is taken, the answer not yet back
        assert usage(short, key)["credits_reserved"] > 0
        for pid_file in Path(short.run_dir).glob("ApiFunction.*.pid"):  # type: ignore[attr-defined]
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid_file.name.split(".")[1]), signal.SIGKILL)
        request.join(30)
    finally:
        short.fake_config(latency_ms=0)
    assert answers and answers[0] >= 500  # the client learns it failed; what did it cost?
    deadline = time.monotonic() + 40
    while (figures := usage(short, key))["credits_reserved"] > 0 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert figures["credits_reserved"] == 0 and figures["credits_spent"] == 0, figures
    assert (figures["requests"], figures["failed_generations"], figures["images_generated"]) == (1, 1, 0)
    assert figures["remaining"]["credits"] == 5
