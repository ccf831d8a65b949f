"""Job webhooks: HTTPS only, never to private, loopback or link-local addresses (checked at submit, at delivery,
and on the address each connection reached, so DNS rebinding cannot slip past the checks), signed with
HMAC-SHA256 under the tenant's secret, retried with backoff.

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
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPSConnection
from urllib3.connectionpool import HTTPSConnectionPool
from urllib3.exceptions import NewConnectionError

from .errors import RequestInvalid
from .observability import logger

HEADER = "x-webhook-url"
SIGNATURE_HEADER = "x-webhook-signature"
MAX_URL_LENGTH = 2048  # also the OpenAPI spec's
BACKOFF_SECONDS = (0, 2, 4, 8)  # four attempts


def _addresses(host: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror:
        return []
    return [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]


def _public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return address.is_global and not address.is_multicast


class NonPublicAddress(NewConnectionError):
    """The connection reached an address webhooks may not go to; nothing was sent on it."""

    def __init__(self, conn: HTTPSConnection, detail: str) -> None:
        super().__init__(conn, detail)
        self.detail = detail


class _PublicOnlyConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        # The host was checked before, but DNS may answer differently for this connection (rebinding): the
        # address actually reached is checked before a byte is sent.
        sock = super()._new_conn()
        peer = ipaddress.ip_address(sock.getpeername()[0].split("%")[0])
        if not _public(peer):
            sock.close()
            raise NonPublicAddress(self, f"'{self.host}' led to {peer}, which is not a public address")
        return sock


class _PublicOnlyPool(HTTPSConnectionPool):
    ConnectionCls = _PublicOnlyConnection


class _PublicOnlyAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"https": _PublicOnlyPool}


def public_only_session() -> requests.Session:
    """A session that connects to public addresses only (https; check_url refuses every other scheme)."""
    session = requests.Session()
    session.mount("https://", _PublicOnlyAdapter())
    return session


def _refused_address(exc: requests.ConnectionError) -> NonPublicAddress | None:
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return reason if isinstance(reason, NonPublicAddress) else None


def check_url(url: str, *, allow_private: bool) -> str:
    """The URL if it may receive webhooks, else RequestInvalid naming the reason."""
    parts = urlsplit(url)
    if parts.scheme != "https" and not (allow_private and parts.scheme == "http"):
        raise RequestInvalid(f"Header '{HEADER}' must be an https:// URL")
    if not parts.hostname:
        raise RequestInvalid(f"Header '{HEADER}' has no host")
    if len(url) > MAX_URL_LENGTH:
        raise RequestInvalid(f"Header '{HEADER}' is longer than {MAX_URL_LENGTH} characters")
    if allow_private:
        return url
    addresses = _addresses(parts.hostname)
    if not addresses:
        raise RequestInvalid(f"Header '{HEADER}': host '{parts.hostname}' does not resolve")
    for address in addresses:
        if not _public(address):
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
    http = session or (requests.Session() if allow_private else public_only_session())
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
        except requests.ConnectionError as exc:
            if (blocked := _refused_address(exc)) is not None:
                logger.warning("Webhook refused: its host led to a non-public address", extra={"url": url})
                return {"delivered": False, "attempts": attempt, "error": f"refused: {blocked.detail}"}
            last = type(exc).__name__
        except requests.RequestException as exc:
            last = type(exc).__name__
        else:
            if 200 <= response.status_code < 300:
                return {"delivered": True, "attempts": attempt, "status": response.status_code}
            last = f"HTTP {response.status_code}"
        logger.warning("Webhook attempt failed", extra={"attempt": attempt, "reason": last})
    return {"delivered": False, "attempts": len(BACKOFF_SECONDS), "error": last}
