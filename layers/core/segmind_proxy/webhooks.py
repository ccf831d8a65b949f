"""Job webhooks: HTTPS only, to public addresses only (checked at submit, at delivery, and on the address each
connection reached, so DNS rebinding cannot slip past the checks), signed with HMAC-SHA256 under the tenant's
secret, retried with backoff. An IPv6 address carrying an IPv4 one (IPv4-mapped, NAT64, 6to4) is judged by the
IPv4 one; Teredo and IPv4-compatible addresses are refused.

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
PUBLIC_ONLY = "webhooks go to public addresses only"


Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _addresses(host: str) -> list[Address]:
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror:
        return []
    return [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]


# Explicit ranges from IANA's special-purpose address registries, not `is_global` alone: its lists differ between
# Python versions (3.11 locally, 3.13 on Lambda), and neither refuses every range below.
_IPV4_RANGES = tuple(
    (ipaddress.IPv4Network(network), kind)
    for network, kind in (
        ("0.0.0.0/8", "in 0.0.0.0/8 (this network)"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "shared address space (carrier-grade NAT)"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "in 192.0.0.0/24 (IETF protocol assignments)"),
        ("192.0.2.0/24", "documentation"),
        ("192.88.99.0/24", "in 192.88.99.0/24 (6to4 relays, deprecated)"),
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),
    )
)
_IPV6_RANGES = tuple(
    (ipaddress.IPv6Network(network), kind)
    for network, kind in (
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("64:ff9b:1::/48", "in 64:ff9b:1::/48 (local-use NAT64)"),
        ("100::/64", "discard-only"),
        ("2001::/23", "in 2001::/23 (IETF protocol assignments)"),
        ("2001:db8::/32", "documentation"),
        ("3fff::/20", "documentation"),
        ("fc00::/7", "unique local (private)"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local (deprecated)"),
        ("ff00::/8", "multicast"),
    )
)
_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052's well-known prefix: the IPv4 address is the last 32 bits


def _ipv4_kind(address: ipaddress.IPv4Address) -> str | None:
    """What makes an IPv4 address non-public ("loopback", "private", ...), or None if it is public."""
    for network, kind in _IPV4_RANGES:
        if address in network:
            return kind
    # Refuses what a later Python's lists add and the ranges above lack; it adds nothing on 3.11 to 3.13.
    return None if address.is_global else "not globally reachable"


def _carried(address: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, str] | None:
    """The IPv4 address this IPv6 address stands for, and the form: a connection to it ends there."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped, "IPv4-mapped"
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF), "NAT64"
    if address.sixtofour is not None:
        return address.sixtofour, "6to4"
    return None


def _tunnelled(address: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, str] | None:
    """Forms refused whatever they carry (deprecated, not routed to ordinary hosts): Teredo's client address (XORed
    with all ones, as `.teredo` undoes) and IPv4-compatible ::a.b.c.d (::/96 but :: and ::1)."""
    if address.teredo is not None:
        return address.teredo[1], "Teredo"
    if int(address) >> 32 == 0 and int(address) > 1:
        return ipaddress.IPv4Address(int(address)), "IPv4-compatible"
    return None


def _ipv6_refusal(address: ipaddress.IPv6Address) -> str | None:
    if (carried := _carried(address)) is not None:
        ipv4, form = carried
        kind = _ipv4_kind(ipv4)
        return None if kind is None else f"embeds {ipv4} ({form}), which is {kind}"
    if (tunnelled := _tunnelled(address)) is not None:
        ipv4, form = tunnelled
        kind = _ipv4_kind(ipv4)
        if kind is None:
            return f"is {form} (deprecated), refused whatever it embeds"
        return f"embeds {ipv4} ({form}), which is {kind}"
    for network, kind in _IPV6_RANGES:
        if address in network:
            return f"is {kind}"
    if address not in _GLOBAL_UNICAST:
        return "is reserved (outside 2000::/3, the global unicast range)"
    return None if address.is_global else "is not globally reachable"  # as for IPv4


def _refusal(address: Address) -> str | None:
    """Why webhooks may not go to this address, as a predicate ("is loopback", "embeds 127.0.0.1 (NAT64), which is
    loopback"), or None if it is public. An IPv6 address carrying an IPv4 one is judged by the IPv4 one."""
    if isinstance(address, ipaddress.IPv4Address):
        kind = _ipv4_kind(address)
        return None if kind is None else f"is {kind}"
    return _ipv6_refusal(address)


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
        if (reason := _refusal(peer)) is not None:
            sock.close()
            raise NonPublicAddress(self, f"'{self.host}' led to {peer}, which {reason}")
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
    # No proxy or .netrc from the environment: through a proxy, the address checked would be the proxy's.
    session.trust_env = False
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
        if (reason := _refusal(address)) is not None:
            raise RequestInvalid(f"Header '{HEADER}': {_explained(parts.hostname, address, reason)}; {PUBLIC_ONLY}")
    return url


def _explained(host: str, address: Address, reason: str) -> str:
    """The refusal, naming the address as the client wrote it, or the host and what it resolved to."""
    try:
        if ipaddress.ip_address(host) == address:
            return f"address {address} {reason}"
    except ValueError:
        pass
    return f"host '{host}' resolves to {address}, which {reason}"


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
