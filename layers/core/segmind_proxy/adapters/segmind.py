"""Segmind client: one requests Session per container, deadline-bounded retries, and every failure as an UpstreamFailure."""

from __future__ import annotations

import base64
import binascii
import json
import random
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as WaitTimedOut
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import requests
from urllib3 import HTTPResponse
from urllib3.exceptions import DecodeError, ProtocolError, ReadTimeoutError

from segmind_proxy.domain.errors import FailureKind, UpstreamFailure
from segmind_proxy.domain.image_formats import sniff_format
from segmind_proxy.domain.upstream import Generation

KeyProvider = Callable[..., str]
TOO_SLOW = "Segmind was too slow: its answer had not arrived in full by the gateway's deadline"

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
# No new attempt starts with less time than this left before the deadline.
MIN_ATTEMPT_SECONDS = 1.0
BACKOFF_BASE_SECONDS = 0.5
BACKOFF_CAP_SECONDS = 8.0
BODY_CHUNK_BYTES = 64 * 1024
# requests' timeouts bound each socket read, not the whole answer: a body trickled a few bytes a second would outlast
# any deadline. Each exchange runs here while the caller waits for it no longer than the deadline. An abandoned one
# stops at the next bytes that arrive, or at its read timeout (itself no longer than the time that was left): a few spare workers
# keep such a straggler from holding up the next request of the same container.
_exchanges = ThreadPoolExecutor(max_workers=4, thread_name_prefix="segmind")


@dataclass(frozen=True)
class _Answer:
    """An upstream answer read whole within the deadline: the parts of `requests.Response` that are used."""

    status_code: int
    headers: Mapping[str, str]
    content: bytes

    def json(self) -> Any:
        return json.loads(self.content)


class _TooSlow(Exception):
    """The deadline passed before the whole answer (headers and every byte of the body) had arrived."""


@dataclass
class _Failure:
    kind: FailureKind
    status: int | None = None
    retry_after: float | None = None
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class SegmindClient:
    def __init__(
        self,
        base_url: str,
        key_provider: KeyProvider,
        *,
        session: requests.Session | None = None,
        max_attempts: int = 3,
        connect_timeout: float = 3.05,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
        on_attempt_error: Callable[[str], None] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._key_provider = key_provider
        self._session = session or requests.Session()
        self._max_attempts = max_attempts
        self._connect_timeout = connect_timeout
        self._clock = clock
        self._sleep = sleep
        self._jitter = jitter
        self._on_attempt_error = on_attempt_error or (lambda kind: None)

    def reconnect(self) -> None:
        """Close the session's connections and start a new session (SnapStart's after-restore hook): a restored
        environment opens its own connections to Segmind."""
        old, self._session = self._session, requests.Session()
        old.close()

    def txt2img(self, slug: str, payload: dict[str, Any], *, deadline: float) -> Generation:
        """POST the payload to `/v1/{slug}` and return the decoded images. `deadline` is on the `clock` scale."""
        started = self._clock()
        response, attempts = self._call("POST", f"/v1/{slug}", payload, deadline)
        return self._generation(response, payload, attempts, started)

    def credits(self, *, deadline: float) -> dict[str, float]:
        """`GET /v1/get-user-credits`: the account's balance, `{"credits": ..., "free-credits": ...}`."""
        response, _ = self._call("GET", "/v1/get-user-credits", None, deadline)
        try:
            body = response.json()
            return {"credits": float(body["credits"]), "free_credits": float(body.get("free-credits", 0.0))}
        except (ValueError, KeyError, TypeError, RecursionError):
            self._on_attempt_error(FailureKind.INVALID_RESPONSE)
            raise _to_error(
                _Failure(FailureKind.INVALID_RESPONSE, detail="Segmind's credits answer was not understood")
            ) from None

    def _call(self, method: str, path: str, payload: dict[str, Any] | None, deadline: float) -> tuple[_Answer, int]:
        """One logical call with the key injected: bounded retries, one key refresh on 401, errors mapped."""
        url = f"{self.base_url}{path}"
        key = self._key_provider()
        key_refreshed = False
        attempt = 0
        while True:
            attempt += 1
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise _to_error(_Failure(FailureKind.TIMEOUT, detail="no time left before the gateway's deadline"))
            try:
                response = self._exchange(method, url, payload, key, deadline)
            except _TooSlow:
                failure = _Failure(FailureKind.TIMEOUT, detail=TOO_SLOW)
            except requests.Timeout:
                failure = _Failure(FailureKind.TIMEOUT, detail="Segmind was too slow to answer")
            except requests.ConnectionError as exc:
                if _read_timed_out(exc):  # a stall in the middle of the body: requests reports it as a connection error
                    failure = _Failure(FailureKind.TIMEOUT, detail=TOO_SLOW)
                else:
                    failure = _Failure(FailureKind.CONNECTION, detail="could not connect to Segmind")
            except requests.RequestException:
                # A broken 200 body (e.g. truncated): credits may be spent, so no blind retry.
                self._on_attempt_error(FailureKind.INVALID_RESPONSE)
                raise _to_error(_Failure(FailureKind.INVALID_RESPONSE, detail="Segmind's answer was cut off")) from None
            else:
                if response.status_code == 200:
                    return response, attempt
                if response.status_code == 401 and not key_refreshed:
                    # Possibly a rotated key: fetch it afresh once; this retry does not count as an attempt.
                    key_refreshed = True
                    key = self._key_provider(refresh=True)
                    attempt -= 1
                    continue
                failure = _classify(response, key)
            self._on_attempt_error(failure.kind)
            if failure.status is not None and failure.status not in RETRYABLE_STATUS:
                raise _to_error(failure)
            if attempt >= self._max_attempts:
                raise _to_error(failure)
            delay = self._jitter() * min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** (attempt - 1))
            if failure.retry_after is not None:
                delay = max(delay, failure.retry_after)
            if self._clock() + delay + MIN_ATTEMPT_SECONDS > deadline:
                raise _to_error(failure)
            self._sleep(delay)

    def _exchange(self, method: str, url: str, payload: dict[str, Any] | None, key: str, deadline: float) -> _Answer:
        """One HTTP exchange, from connecting to the body's last byte, within the deadline (see `_exchanges`)."""
        remaining = deadline - self._clock()
        fetching = _exchanges.submit(self._fetch, method, url, payload, key, deadline)
        try:
            return fetching.result(timeout=max(0.0, remaining))
        except WaitTimedOut:
            raise _TooSlow from None

    def _fetch(self, method: str, url: str, payload: dict[str, Any] | None, key: str, deadline: float) -> _Answer:
        remaining = max(0.001, deadline - self._clock())
        with self._session.request(
            method,
            url,
            json=payload,
            headers={"x-api-key": key, "Accept": "application/json, image/*"},
            timeout=(min(self._connect_timeout, remaining), remaining),
            stream=True,
        ) as response:
            return _Answer(response.status_code, response.headers, self._body(response.raw, deadline))

    def _body(self, raw: HTTPResponse, deadline: float) -> bytes:
        """The body as it arrives: each read returns what has come (up to BODY_CHUNK_BYTES), so a trickled body is
        checked against the deadline every few bytes, not once per 64 KB (a read of 64 KB waits for all of them).
        urllib3's errors become requests' own, as `iter_content` would raise them."""
        chunks = []
        while True:
            if self._clock() > deadline:  # abandoned by `_exchange` already: stop reading
                raise _TooSlow
            try:
                chunk = raw.read1(BODY_CHUNK_BYTES, decode_content=True)
            except ReadTimeoutError:
                raise _TooSlow from None
            except ProtocolError as exc:
                raise requests.exceptions.ChunkedEncodingError(exc) from None
            except DecodeError as exc:
                raise requests.exceptions.ContentDecodingError(exc) from None
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)

    def _generation(self, response: _Answer, payload: dict[str, Any], attempts: int, started: float) -> Generation:
        images = _decode_images(response)
        formats = {sniff_format(image) for image in images}
        if not images or None in formats or len(formats) != 1:
            self._on_attempt_error(FailureKind.INVALID_RESPONSE)
            raise _to_error(_Failure(FailureKind.INVALID_RESPONSE, detail="Segmind answered 200 without a valid image"))
        headers = response.headers
        return Generation(
            images=images,
            image_format=formats.pop() or payload.get("image_format", "jpeg"),
            seed=_int_or_none(headers.get("x-seed-value")),
            remaining_credits=_float_or_none(headers.get("x-remaining-credits")),
            upstream_request_id=headers.get("x-request-id"),
            latency_ms=(self._clock() - started) * 1000,
            attempts=attempts,
        )


def _read_timed_out(exc: requests.ConnectionError) -> bool:
    return bool(exc.args) and isinstance(exc.args[0], ReadTimeoutError)


def _decode_images(response: _Answer) -> list[bytes]:
    content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if content_type.startswith("image/"):
        return [response.content]
    try:
        body = response.json()
    except (ValueError, RecursionError):  # deep nesting too: not JSON we can use
        return []
    if not isinstance(body, dict):
        return []
    encoded = body.get("images", body.get("image"))
    items = encoded if isinstance(encoded, list) else [encoded]
    try:
        return [base64.b64decode(item, validate=True) for item in items if isinstance(item, str)]
    except (binascii.Error, ValueError):
        return []


def _classify(response: _Answer, key: str) -> _Failure:
    status = response.status_code
    detail = _upstream_message(response, key)
    if status == 401:
        return _Failure(FailureKind.AUTH, status, detail=detail)
    if status == 406:
        return _Failure(FailureKind.CREDITS, status, detail=detail)
    if status == 429:
        return _Failure(FailureKind.RATE_LIMITED, status, retry_after=_reset_wait(response), detail=detail)
    if status >= 500:
        return _Failure(FailureKind.SERVER_ERROR, status, detail=detail)
    return _Failure(FailureKind.REJECTED, status, detail=detail)


def _to_error(failure: _Failure) -> UpstreamFailure:
    """The failure in words the client may read (never the key); the front door picks its status."""
    return UpstreamFailure(
        failure.kind, _message(failure), upstream_status=failure.status, retry_after=failure.retry_after
    )


def _message(failure: _Failure) -> str:
    kind = failure.kind
    if kind is FailureKind.TIMEOUT:
        return f"Upstream timeout: {failure.detail}"
    if kind is FailureKind.CONNECTION:
        return f"Upstream unreachable: {failure.detail}"
    if kind is FailureKind.AUTH:
        return "The gateway's Segmind API key was rejected by Segmind; the operator must update it"
    if kind is FailureKind.CREDITS:
        return "The gateway's Segmind account has run out of credits; try again once the operator tops it up"
    if kind is FailureKind.RATE_LIMITED:
        return "Segmind is rate limiting the gateway; retry later"
    if kind is FailureKind.SERVER_ERROR:
        return f"Segmind failed with HTTP {failure.status}{_suffix(failure.detail)}"
    if kind is FailureKind.REJECTED and failure.status in (400, 422):
        return f"Segmind rejected the request{_suffix(failure.detail)}"
    if kind is FailureKind.REJECTED:
        return f"Segmind answered HTTP {failure.status}{_suffix(failure.detail)}"
    return f"Invalid upstream answer: {failure.detail}"


def _suffix(detail: str) -> str:
    return f": {detail}" if detail else ""


def _upstream_message(response: _Answer, key: str) -> str:
    """Segmind's own message, without the key; redacted before it is cut, so no prefix of the key is left."""
    try:
        body = response.json()
    except (ValueError, RecursionError):
        return ""
    message = body.get("error") or body.get("message") if isinstance(body, dict) else None
    if not message:
        return ""
    message = str(message)
    return (message.replace(key, "[redacted]") if key else message)[:300]


def _reset_wait(response: _Answer) -> float | None:
    """Seconds until `x-rate-limit-reset-at-utc` (ISO 8601 or epoch seconds), if given."""
    raw = response.headers.get("x-rate-limit-reset-at-utc")
    if not raw:
        return None
    try:
        reset = datetime.fromtimestamp(float(raw), tz=UTC)
    except ValueError:
        try:
            reset = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            return None
    if reset.tzinfo is None:
        reset = reset.replace(tzinfo=UTC)
    return max(0.0, (reset - datetime.now(UTC)).total_seconds())


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _float_or_none(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
