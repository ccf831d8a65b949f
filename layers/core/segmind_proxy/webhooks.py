"""Job webhooks: HTTPS only, never to private, loopback or link-local addresses (checked at submit and again at
delivery, against DNS rebinding), signed with HMAC-SHA256 under the tenant's secret, retried with backoff.

Signature header: `x-webhook-signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import socket
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import requests

from .errors import RequestInvalid
from .observability import logger

HEADER = "x-webhook-url"
SIGNATURE_HEADER = "x-webhook-signature"
BACKOFF_SECONDS = (0, 2, 4, 8)  # four attempts


def _addresses(host: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror:
        return []
    return [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]


def check_url(url: str, *, allow_private: bool) -> str:
    """The URL if it may receive webhooks, else RequestInvalid naming the reason."""
    parts = urlsplit(url)
    if parts.scheme != "https" and not (allow_private and parts.scheme == "http"):
        raise RequestInvalid(f"Header '{HEADER}' must be an https:// URL")
    if not parts.hostname:
        raise RequestInvalid(f"Header '{HEADER}' has no host")
    if len(url) > 2048:
        raise RequestInvalid(f"Header '{HEADER}' is longer than 2048 characters")
    if allow_private:
        return url
    addresses = _addresses(parts.hostname)
    if not addresses:
        raise RequestInvalid(f"Header '{HEADER}': host '{parts.hostname}' does not resolve")
    for address in addresses:
        if not address.is_global or address.is_multicast:
            raise RequestInvalid(f"Header '{HEADER}': private, loopback and link-local addresses are not allowed")
    return url


def sign(secret: str, body: bytes, timestamp: int) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(secret: str, body: bytes, header: str, *, tolerance_seconds: int = 300, now: float | None = None) -> bool:
    """What a receiver does (also used by the tests): recompute, compare in constant time, reject stale timestamps."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        timestamp = int(fields["t"])
    except (ValueError, KeyError):
        return False
    if abs((now or time.time()) - timestamp) > tolerance_seconds:
        return False
    return hmac.compare_digest(sign(secret, body, timestamp), header)


def deliver(
    url: str,
    payload: dict[str, Any],
    secret: str,
    *,
    allow_private: bool,
    session: requests.Session | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """POST the payload until a 2xx, with backoff; returns the outcome to record on the job."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    http = session or requests.Session()
    last = ""
    for attempt, pause in enumerate(BACKOFF_SECONDS, start=1):
        sleep(pause)
        try:
            check_url(url, allow_private=allow_private)  # again: DNS may have changed since submit
            response = http.post(
                url,
                data=body,
                headers={"Content-Type": "application/json", SIGNATURE_HEADER: sign(secret, body, int(time.time()))},
                timeout=(3.05, 10),
                allow_redirects=False,
            )
        except RequestInvalid as refused:
            return {"delivered": False, "attempts": attempt, "error": refused.message}
        except requests.RequestException as exc:
            last = type(exc).__name__
        else:
            if 200 <= response.status_code < 300:
                return {"delivered": True, "attempts": attempt, "status": response.status_code}
            last = f"HTTP {response.status_code}"
        logger.warning("Webhook attempt failed", extra={"attempt": attempt, "reason": last})
    return {"delivered": False, "attempts": len(BACKOFF_SECONDS), "error": last}
