"""Security over the local stack: keys, revocation, presigned URL expiry, oversized bodies, and the Segmind key
never showing in any answer or log line of the whole integration suite."""

from __future__ import annotations

import socket
import time
import uuid

import pytest
import requests

from local.stack import FAKE_SEGMIND_KEY
from tests.integration.conftest import SLUG, start_stack, stop_stack

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("key", [None, "", "x" * 40, "segmind-proxy-local-dev-ke"])
def test_missing_and_wrong_keys_are_refused_on_every_keyed_route(stack, key):
    headers = {} if key is None else {"x-api-key": key}
    for method, path in [
        ("POST", f"/v1/{SLUG}"),
        ("POST", f"/v2/{SLUG}"),
        ("GET", "/v1/usage"),
        ("GET", "/v2/requests/abc"),
    ]:
        answer = requests.request(method, f"{stack.base}{path}", json={"prompt": "x"}, headers=headers, timeout=30)
        assert answer.status_code == 401, (method, path)


def test_revoked_keys_are_refused(stack):
    created = stack.cli("tenants", "create", f"sec-{uuid.uuid4().hex[:6]}", "--plan", "enterprise")
    old = created["api_key"]
    new = stack.cli("tenants", "rotate-key", created["name"])["api_key"]
    # Refused at once: by the function (403, the key is no tenant's) while API Gateway's key cache still has the key,
    # by API Gateway (401, an unknown key) after.
    for key, statuses in [(old, (401, 403)), (new, (200,))]:
        answer = requests.get(f"{stack.base}/v1/usage", headers={"x-api-key": key}, timeout=30)
        assert answer.status_code in statuses
    stack.cli("tenants", "delete", created["name"], "--yes")
    assert requests.get(f"{stack.base}/v1/usage", headers={"x-api-key": new}, timeout=30).status_code in (401, 403)


def test_bodies_over_the_limit_are_refused_without_reading_them(stack):
    """A 20 MB Content-Length is refused (413) before a byte of the body is sent."""
    host, port = stack.base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(
            (
                f"POST /v1/{SLUG} HTTP/1.1\r\nHost: {host}\r\nx-api-key: {stack.api_key}\r\n"
                "Content-Type: application/json\r\nContent-Length: 20000000\r\n\r\n"
            ).encode()
        )
        started = time.monotonic()
        reply = conn.recv(4096).decode(errors="replace")
    assert reply.startswith("HTTP/1.1 413") and time.monotonic() - started < 5
    big = stack.post({"prompt": "x" * 100_000})  # under API Gateway's limit, over the function's
    assert big.status_code == 413 and "larger than" in big.json()["error"]


def test_presigned_urls_expire_when_configured():
    running = start_stack({"PARAMETER_OVERRIDES": "PresignedUrlTtlSeconds=4"})
    try:
        answer = running.post({"prompt": "expiring", "width": 128, "height": 128}, headers={"x-response-mode": "url"})
        body = answer.json()
        assert body["expires_in"] == 4 and "X-Amz-Expires=4" in body["images"][0]["url"]
        url = body["images"][0]["url"]
        assert requests.get(url, timeout=30).status_code == 200
        time.sleep(5.5)
        assert requests.get(url, timeout=30).status_code == 403
    finally:
        stop_stack(running.process)


@pytest.mark.after_the_others
def test_the_segmind_key_never_appeared_in_an_answer_or_a_log_line(stack, seen_answers):
    """Runs after every other test collected with it (see `after_the_others`): everything the suite saw, scanned."""
    assert len(seen_answers) > 50
    assert not [a for a in seen_answers if FAKE_SEGMIND_KEY.encode() in a]
    assert stack.output and FAKE_SEGMIND_KEY not in "".join(stack.output)
