"""Async v2, coalescing, idempotency and webhooks on the local stack, over HTTP."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import ClassVar

import pytest
import requests
from standardwebhooks import Webhook

from segmind_proxy.adapters.webhooks import verify_legacy
from segmind_proxy.domain.image_formats import sniff_format
from tests.integration.conftest import SLUG, start_stack, stop_stack
from tests.support.http_server import serving

pytestmark = pytest.mark.integration


def body(**changes):
    return {"prompt": f"async {uuid.uuid4().hex}", "width": 256, "height": 256, **changes}


def poll(url: str, key: str, *, until=("COMPLETED", "FAILED"), timeout=60, log: list[str] | None = None) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = requests.get(url, headers={"x-api-key": key}, timeout=30).json()
        if status["status"] in until:
            return status
        time.sleep(0.3)
    raise AssertionError(f"still {status} after {timeout}s\n" + "".join((log or [])[-30:]))


def test_v2_submit_then_poll_returns_the_image_url(stack):
    """As Segmind's SDK does: submit to /v2, follow status_url, then response_url."""
    submitted = requests.post(
        f"{stack.base}/v2/{SLUG}", json=body(batch_size=2), headers={"x-api-key": stack.api_key}, timeout=30
    ).json()
    assert submitted["status"] == "QUEUED"
    assert submitted["status_url"].startswith(stack.base) and submitted["response_url"].startswith(stack.base)
    assert poll(submitted["status_url"], stack.api_key)["status"] == "COMPLETED"
    result = requests.get(submitted["response_url"], headers={"x-api-key": stack.api_key}, timeout=30).json()
    assert len(result["output"]) == 2
    images = [requests.get(url, timeout=30).content for url in result["output"]]
    assert all(sniff_format(image) == "jpeg" for image in images)


def test_twenty_identical_concurrent_v1_requests_cost_one_upstream_call(stack, fake_calls):
    request = body()
    stack.fake_config(latency_ms=1500)
    try:
        before = fake_calls()
        with ThreadPoolExecutor(max_workers=20) as pool:
            answers = list(pool.map(lambda _: stack.post(request), range(20)))
    finally:
        stack.fake_config(latency_ms=0)
    assert [a.status_code for a in answers] == [200] * 20
    assert len({a.content for a in answers}) == 1
    assert fake_calls() == before + 1


def test_a_retry_with_the_same_idempotency_key_costs_nothing_more(stack, fake_calls):
    key = stack.cli("tenants", "create", f"idem-{uuid.uuid4().hex[:6]}", "--plan", "enterprise")["api_key"]
    request, headers = body(seed=-1), {"x-api-key": key, "Idempotency-Key": f"order-{uuid.uuid4()}"}
    before = fake_calls()
    first = requests.post(stack.txt2img, json=request, headers=headers, timeout=60)
    again = requests.post(stack.txt2img, json=request, headers=headers, timeout=60)
    assert again.content == first.content and again.headers["x-idempotent-replay"] == "true"
    assert fake_calls() == before + 1
    usage = requests.get(f"{stack.base}/v1/usage", headers={"x-api-key": key}, timeout=30).json()
    assert usage["images_generated"] == 1
    changed = requests.post(stack.txt2img, json={**request, "steps": 5}, headers=headers, timeout=60)
    assert changed.status_code == 422


class Receiver(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[dict, bytes]]] = []

    def do_POST(self):
        data = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.received.append((dict(self.headers), data))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_a_webhook_arrives_signed(stack):
    created = stack.cli("tenants", "create", f"hook-{uuid.uuid4().hex[:6]}", "--plan", "enterprise")
    secret = stack.cli("tenants", "webhook-secret", created["name"])["webhook_secret"]
    with serving(Receiver) as receiver:
        hook = f"{receiver}/done"  # loopback is allowed in the local stack only
        headers = {"x-api-key": created["api_key"], "x-webhook-url": hook}
        submitted = requests.post(f"{stack.base}/v2/{SLUG}", json=body(), headers=headers, timeout=30).json()
        deadline = time.monotonic() + 30
        while not Receiver.received and time.monotonic() < deadline:
            time.sleep(0.2)
    sent_headers, data = Receiver.received[-1]
    payload = Webhook(secret).verify(data, sent_headers)  # as docs/api.md tells receivers to
    assert sent_headers["webhook-id"] == f"msg_{submitted['request_id']}_completed"
    assert verify_legacy(secret, data, sent_headers["x-webhook-signature"])  # the deprecated header, still sent
    assert payload == json.loads(data)
    assert payload["request_id"] == submitted["request_id"] and payload["status"] == "COMPLETED"


def test_a_worker_killed_mid_job_recovers_and_charges_once(tmp_path: Path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    running = start_stack(
        {
            # Short timeouts so redelivery comes in seconds (the template's minimums are for AWS). The worker keeps
            # timeout - DEADLINE_MARGIN_SECONDS (3 s) for a job: 7 s leaves a fresh container on a loaded host time
            # for its first AWS calls and the 1.5 s upstream call (3 s did not, in a CI run: a third call).
            "PARAMETER_OVERRIDES": "WorkerTimeoutSeconds=10 QueueVisibilityTimeoutSeconds=11 MaxJobAttempts=4",
            "LOCAL_STACK_RUN_DIR": str(run_dir),
            "FAKE_SEGMIND_LATENCY_MS": "1500",
        }
    )
    try:
        key = running.cli("tenants", "create", "crashy", "--plan", "enterprise", "--budget-credits", "1")["api_key"]
        submitted = requests.post(
            f"{running.base}/v2/{SLUG}", json=body(), headers={"x-api-key": key}, timeout=30
        ).json()
        poll(submitted["status_url"], key, until=("PROCESSING",), timeout=20)
        deadline = time.monotonic() + 20
        while running.fake_stats()["calls"] < 1 and time.monotonic() < deadline:
            time.sleep(0.1)  # kill it mid-call: Segmind has the request, the answer never arrives
        workers = [int(p.name.split(".")[1]) for p in run_dir.glob("WorkerFunction.*.pid")]
        assert workers
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        final = poll(submitted["status_url"], key, timeout=90, log=running.output)
        assert final["status"] == "COMPLETED", final
        usage = requests.get(f"{running.base}/v1/usage", headers={"x-api-key": key}, timeout=30).json()
        assert usage["images_generated"] == 1 and usage["credits_reserved"] == 0
        assert usage["credits_spent"] == pytest.approx(0.004)  # charged once, though Segmind was called twice
        # Segmind was called by the killed worker and by the one that completed the job, and by nobody else: only
        # an attempt that failed in the open (a loaded host can time one out, then SQS retries it) may add a call.
        failed_calls = sum('"UpstreamErrors":' in line for line in running.output)
        assert running.fake_stats()["calls"] == 2 + failed_calls, "".join(running.output[-30:])
    finally:
        stop_stack(running.process)
