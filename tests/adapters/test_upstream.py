import base64
import contextlib
import json
import socket
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import requests
import responses

from local.fake_segmind import render
from segmind_proxy.adapters.segmind import SegmindClient
from segmind_proxy.domain.errors import FailureKind, UpstreamFailure
from tests.fakes import FakeClock

URL = "https://segmind.test/v1/model"
JPEG = render("x", 1, 64, 64, "jpeg", 80)
PNG = render("x", 1, 64, 64, "png", 80)


class Keys:
    def __init__(self, *keys: str) -> None:
        self.keys = list(keys)
        self.refreshes = 0

    def __call__(self, *, refresh: bool = False) -> str:
        if refresh:
            self.refreshes += 1
            self.keys.pop(0)
        return self.keys[0]


@pytest.fixture
def clock():
    return FakeClock(now=1000.0)


@pytest.fixture
def errors():
    return []


def client(clock, errors, keys=None, attempts=3):
    return SegmindClient(
        "https://segmind.test/",
        keys or Keys("sg_key_1", "sg_key_2"),
        max_attempts=attempts,
        clock=clock,
        sleep=clock.sleep,
        jitter=lambda: 1.0,
        on_attempt_error=errors.append,
    )


def ok_json(images, headers=None):
    body = (
        {"image": base64.b64encode(images[0]).decode()}
        if len(images) == 1
        else {"images": [base64.b64encode(i).decode() for i in images]}
    )
    return {"json": body, "status": 200, "headers": headers or {}}


@responses.activate
def test_success_decodes_images_and_reads_segmind_headers(clock, errors):
    responses.add(
        responses.POST,
        URL,
        **ok_json([JPEG], {"x-remaining-credits": "12.5", "x-seed-value": "42", "x-request-id": "r1"}),
    )
    result = client(clock, errors).txt2img("model", {"prompt": "x"}, deadline=clock() + 30)
    assert result.images == [JPEG]
    assert (result.image_format, result.seed, result.remaining_credits, result.upstream_request_id) == (
        "jpeg",
        42,
        12.5,
        "r1",
    )
    sent = responses.calls[0].request
    assert sent.headers["x-api-key"] == "sg_key_1"
    assert json.loads(sent.body) == {"prompt": "x"}
    assert errors == []


@responses.activate
def test_raw_image_body_and_batches_are_understood(clock, errors):
    responses.add(responses.POST, URL, body=PNG, status=200, content_type="image/png")
    responses.add(responses.POST, URL, **ok_json([JPEG, JPEG, JPEG]))
    segmind = client(clock, errors)
    assert segmind.txt2img("model", {}, deadline=clock() + 30).images == [PNG]
    assert len(segmind.txt2img("model", {}, deadline=clock() + 30).images) == 3


@responses.activate
def test_401_fetches_the_key_afresh_once_then_succeeds(clock, errors):
    keys = Keys("sg_old", "sg_rotated")
    responses.add(responses.POST, URL, json={"error": "Invalid API key"}, status=401)
    responses.add(responses.POST, URL, **ok_json([JPEG]))
    result = client(clock, errors, keys).txt2img("model", {}, deadline=clock() + 30)
    assert result.images == [JPEG]
    assert keys.refreshes == 1
    assert [c.request.headers["x-api-key"] for c in responses.calls] == ["sg_old", "sg_rotated"]


@responses.activate
def test_401_twice_is_a_502_that_never_shows_the_key(clock, errors):
    responses.add(responses.POST, URL, json={"error": "Invalid API key sg_key_2"}, status=401)
    with pytest.raises(UpstreamFailure) as caught:
        client(clock, errors).txt2img("model", {}, deadline=clock() + 30)
    assert caught.value.kind is FailureKind.AUTH
    assert "operator" in caught.value.message
    assert "sg_key" not in caught.value.message
    assert len(responses.calls) == 2
    assert errors == ["auth"]


@responses.activate
def test_406_out_of_credits_is_503_without_retry(clock, errors):
    responses.add(responses.POST, URL, json={"error": "Not enough credits"}, status=406)
    with pytest.raises(UpstreamFailure) as caught:
        client(clock, errors).txt2img("model", {}, deadline=clock() + 30)
    assert caught.value.kind is FailureKind.CREDITS
    assert "credits" in caught.value.message
    assert len(responses.calls) == 1
    assert errors == ["credits"]


@pytest.mark.parametrize("status", [400, 403, 404, 405, 422])
@responses.activate
def test_other_4xx_are_never_retried(clock, errors, status):
    responses.add(responses.POST, URL, json={"error": "bad"}, status=status)
    with pytest.raises(UpstreamFailure) as caught:
        client(clock, errors).txt2img("model", {}, deadline=clock() + 30)
    assert (caught.value.kind, caught.value.upstream_status) == (FailureKind.REJECTED, status)
    assert caught.value.message.startswith(
        "Segmind rejected the request" if status in (400, 422) else f"Segmind answered HTTP {status}"
    )
    assert len(responses.calls) == 1


@pytest.mark.parametrize("status", [500, 502, 503, 504])
@responses.activate
def test_5xx_is_retried_with_backoff_then_succeeds(clock, errors, status):
    responses.add(responses.POST, URL, json={"error": "down"}, status=status)
    responses.add(responses.POST, URL, json={"error": "down"}, status=status)
    responses.add(responses.POST, URL, **ok_json([JPEG]))
    result = client(clock, errors).txt2img("model", {}, deadline=clock() + 30)
    assert result.attempts == 3
    assert clock.sleeps == [0.5, 1.0]  # exponential (jitter pinned at its maximum)
    assert errors == ["server_error", "server_error"]


@responses.activate
def test_5xx_exhausting_attempts_is_502(clock, errors):
    for _ in range(3):
        responses.add(responses.POST, URL, json={"error": "down"}, status=500)
    with pytest.raises(UpstreamFailure) as caught:
        client(clock, errors).txt2img("model", {}, deadline=clock() + 30)
    assert (caught.value.kind, caught.value.upstream_status) == (FailureKind.SERVER_ERROR, 500)
    assert len(responses.calls) == 3


@responses.activate
def test_429_waits_until_the_reset_time_when_it_fits(clock, errors):
    reset = (datetime.now(UTC) + timedelta(seconds=4)).isoformat()
    responses.add(
        responses.POST, URL, json={"error": "slow down"}, status=429, headers={"x-rate-limit-reset-at-utc": reset}
    )
    responses.add(responses.POST, URL, **ok_json([JPEG]))
    client(clock, errors).txt2img("model", {}, deadline=clock() + 30)
    assert 2 < clock.sleeps[0] <= 4  # waited for the reset (less whatever time passed since it was computed)


@responses.activate
def test_429_whose_reset_is_past_the_deadline_is_a_429_with_retry_after(clock, errors):
    reset = (datetime.now(UTC) + timedelta(seconds=60)).isoformat()
    responses.add(
        responses.POST, URL, json={"error": "slow down"}, status=429, headers={"x-rate-limit-reset-at-utc": reset}
    )
    with pytest.raises(UpstreamFailure) as caught:
        client(clock, errors).txt2img("model", {}, deadline=clock() + 20)
    assert caught.value.kind is FailureKind.RATE_LIMITED
    assert 58 <= caught.value.retry_after <= 60
    assert len(responses.calls) == 1


@responses.activate
def test_timeouts_are_retried_then_answer_504(clock, errors):
    for _ in range(3):
        responses.add(responses.POST, URL, body=requests.ReadTimeout("slow"))
    with pytest.raises(UpstreamFailure) as caught:
        client(clock, errors).txt2img("model", {}, deadline=clock() + 30)
    assert caught.value.kind is FailureKind.TIMEOUT
    assert errors == ["timeout"] * 3


@responses.activate
def test_connection_errors_are_retried(clock, errors):
    responses.add(responses.POST, URL, body=requests.ConnectionError("reset"))
    responses.add(responses.POST, URL, **ok_json([JPEG]))
    assert client(clock, errors).txt2img("model", {}, deadline=clock() + 30).attempts == 2
    assert errors == ["connection"]


@responses.activate
def test_no_retry_starts_when_the_deadline_would_pass(clock, errors):
    responses.add(responses.POST, URL, json={"error": "down"}, status=500)
    with pytest.raises(UpstreamFailure) as caught:
        client(clock, errors).txt2img("model", {}, deadline=clock() + 1.2)
    assert caught.value.kind is FailureKind.SERVER_ERROR
    assert len(responses.calls) == 1
    assert clock.sleeps == []


@responses.activate
def test_timeouts_are_bounded_by_the_time_left(clock, errors):
    seen = []

    def capture(request):
        seen.append(request.req_kwargs["timeout"])
        return 200, {"Content-Type": "image/jpeg"}, JPEG

    responses.add_callback(responses.POST, URL, callback=capture)
    client(clock, errors).txt2img("model", {}, deadline=clock() + 7.5)
    assert seen == [(3.05, 7.5)]


@pytest.mark.parametrize(
    "reply",
    [
        {"body": b"<html>oops</html>", "content_type": "text/html"},
        {"json": {"image": "not base64!"}},
        {"json": {"image": base64.b64encode(b"plain text").decode()}},
        {"body": JPEG[: len(JPEG) // 2], "content_type": "image/jpeg"},
        {"json": {"status": "ok"}},
        {"body": b"[" * 20000, "content_type": "application/json"},
    ],
)
@responses.activate
def test_a_200_without_a_whole_image_is_502_and_not_retried(clock, errors, reply):
    responses.add(responses.POST, URL, status=200, **reply)
    with pytest.raises(UpstreamFailure) as caught:
        client(clock, errors).txt2img("model", {}, deadline=clock() + 30)
    assert caught.value.kind is FailureKind.INVALID_RESPONSE
    assert len(responses.calls) == 1
    assert errors == ["invalid_response"]


@responses.activate
def test_upstream_messages_passed_on_never_echo_the_key(clock, errors):
    responses.add(responses.POST, URL, json={"error": "bad prompt for key sg_key_1"}, status=400)
    with pytest.raises(UpstreamFailure) as caught:
        client(clock, errors).txt2img("model", {}, deadline=clock() + 30)
    assert (caught.value.kind, caught.value.upstream_status) == (FailureKind.REJECTED, 400)
    assert "sg_key_1" not in caught.value.message
    assert "[redacted]" in caught.value.message


@responses.activate
def test_a_long_upstream_message_is_cut_after_the_key_is_redacted(clock, errors):
    # The key straddles the 300-character cut: cut first, its prefix would be passed on.
    responses.add(responses.POST, URL, json={"error": "x" * 295 + "sg_key_1"}, status=400)
    with pytest.raises(UpstreamFailure) as caught:
        client(clock, errors).txt2img("model", {}, deadline=clock() + 30)
    assert "sg_ke" not in caught.value.message
    assert caught.value.message.endswith("x[reda")


@pytest.mark.parametrize("body", [b"[" * 20000, b'{"credits": "many"}', b"<html>"])
@responses.activate
def test_a_credits_answer_not_understood_is_502_invalid_response(clock, errors, body):
    responses.add(responses.GET, "https://segmind.test/v1/get-user-credits", body=body, content_type="application/json")
    with pytest.raises(UpstreamFailure) as caught:
        client(clock, errors).credits(deadline=clock() + 30)
    assert caught.value.kind is FailureKind.INVALID_RESPONSE and "not understood" in caught.value.message
    assert errors == ["invalid_response"]


@responses.activate
def test_a_deeply_nested_error_body_is_mapped_without_its_message(clock, errors):
    responses.add(responses.POST, URL, body=b"[" * 20000, status=400, content_type="application/json")
    with pytest.raises(UpstreamFailure) as caught:
        client(clock, errors).txt2img("model", {}, deadline=clock() + 30)
    assert (caught.value.kind, caught.value.upstream_status) == (FailureKind.REJECTED, 400)
    assert caught.value.message == "Segmind rejected the request"


class _SlowUpstream:
    """A real HTTP server on loopback that answers 200 with its headers at once, then sends the body a few bytes at a
    time (`pause` between them) or not at all (`stall`): requests' read timeout bounds each read, not the answer."""

    def __init__(self, *, pause: float = 0.2, stall: bool = False) -> None:
        self.pause, self.stall = pause, stall
        self.closed = threading.Event()
        self.left = threading.Event()  # the client closed the connection while the body was still trickling
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        connection, _ = self.server.accept()
        with connection:
            connection.recv(65536)
            body = json.dumps({"image": base64.b64encode(JPEG).decode()}).encode()
            head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            with contextlib.suppress(OSError):
                connection.sendall(head.encode())
                if self.stall:
                    self.closed.wait(5)
                    return
                for start in range(0, len(body), 8):
                    connection.sendall(body[start : start + 8])
                    if self.closed.wait(self.pause):
                        return
                return
            self.left.set()  # a send failed: the client is gone

    def close(self) -> None:
        """Stops the body too: the client's abandoned read (on its pool's thread) then ends, instead of reading the
        trickle to its end long after the test (the interpreter waits for that thread before exiting)."""
        self.closed.set()
        self.server.close()


@pytest.mark.parametrize("stall", [False, True], ids=["trickled body", "stalled body"])
def test_a_slow_body_ends_at_the_deadline_as_a_504_saying_segmind_was_too_slow(errors, stall):
    upstream = _SlowUpstream(stall=stall)
    started = time.monotonic()
    try:
        with pytest.raises(UpstreamFailure) as caught:
            SegmindClient(upstream.url, Keys("k"), on_attempt_error=errors.append).txt2img(
                "model", {}, deadline=started + 1.0
            )
    finally:
        upstream.close()
    assert time.monotonic() - started < 1.8  # the deadline, not the body's 20 s nor a read timeout after it
    assert caught.value.kind is FailureKind.TIMEOUT
    assert "too slow" in caught.value.message and "connect" not in caught.value.message
    assert errors == ["timeout"]


def test_an_abandoned_slow_body_stops_being_read_soon_after_the_deadline():
    """The caller has its 504 at the deadline; the read it abandoned (on the client's pool) must end too, not hold
    a worker for as long as Segmind trickles (the whole body here would take over a minute)."""
    upstream = _SlowUpstream(pause=0.2)
    try:
        with pytest.raises(UpstreamFailure):
            SegmindClient(upstream.url, Keys("k")).txt2img("model", {}, deadline=time.monotonic() + 1.0)
        assert upstream.left.wait(10)  # the abandoned read closed the connection
    finally:
        upstream.close()
