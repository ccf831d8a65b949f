"""Job webhooks: HTTPS only, to public addresses only (checked at submit, at delivery, and on the address each
connection reached, so DNS rebinding cannot slip past the checks), signed under the tenant's secret, retried with
backoff. An IPv6 address carrying an IPv4 one (IPv4-mapped, NAT64, 6to4) is judged by the IPv4 one; Teredo and
IPv4-compatible addresses are refused. The local stack's rule (ALLOW_PRIVATE_WEBHOOKS=loopback) takes http or https
to loopback addresses only, under the same three checks.

Signed as Standard Webhooks (https://www.standardwebhooks.com) says, so receivers verify with its libraries:
- `webhook-id`: `msg_<job id>_<terminal status>`, the same on every attempt and on any redelivery of one job's
  notification (a worker that stopped after sending, before recording it), so receivers can drop duplicates;
- `webhook-timestamp`: unix seconds, fresh on each attempt;
- `webhook-signature`: `v1,<base64 HMAC-SHA256 of "<webhook-id>.<webhook-timestamp>.<raw body>">`, keyed by the
  base64-decoded part of the tenant's secret after `whsec_`. Secrets are `whsec_` + base64 of 24 random bytes; those
  made before (`whsec_` + 48 hex characters) are used the same way: hex characters are base64 ones, so they decode
  (to 36 bytes) as the specification's libraries decode them, and a receiver verifies with the secret as it is.

Deprecated, sent alongside until receivers have moved: `x-webhook-signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of
"<t>.<raw body>">`, keyed by the secret string's own bytes (`whsec_` included); `verify_legacy` checks it."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import re
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar, NamedTuple
from urllib.parse import SplitResult, urlsplit

import requests
from requests.adapters import HTTPAdapter
from standardwebhooks import Webhook
from standardwebhooks.webhooks import EmptyWebhookSecretError
from urllib3.connection import HTTPConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import NewConnectionError

from segmind_proxy.domain.errors import RequestInvalid
from segmind_proxy.domain.jobs import MAX_WEBHOOK_URL_LENGTH
from segmind_proxy.observability import logger
from segmind_proxy.settings import WebhookTargets

HEADER = "x-webhook-url"  # named in refusals: the header the URL came in
LEGACY_SIGNATURE_HEADER = "x-webhook-signature"  # deprecated: see the module's docstring
BACKOFF_SECONDS = (0, 2, 4, 8)  # four attempts


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


def _public_refusal(address: Address) -> str | None:
    """Why webhooks may not go to this address, as a predicate ("is loopback", "embeds 127.0.0.1 (NAT64), which is
    loopback"), or None if it is public. An IPv6 address carrying an IPv4 one is judged by the IPv4 one."""
    if isinstance(address, ipaddress.IPv4Address):
        kind = _ipv4_kind(address)
        return None if kind is None else f"is {kind}"
    return _ipv6_refusal(address)


_IPV4_LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")
_IPV6_LOOPBACK = ipaddress.IPv6Address("::1")


def _loopback_refusal(address: Address) -> str | None:
    # Not `is_loopback`: Python 3.13 also counts ::ffff:127.0.0.1, 3.11 does not.
    loopback = address in _IPV4_LOOPBACK if isinstance(address, ipaddress.IPv4Address) else address == _IPV6_LOOPBACK
    return None if loopback else "is not loopback"


class _Rule(NamedTuple):
    schemes: tuple[str, ...]
    refusal: Callable[[Address], str | None]
    summary: str  # ends every refusal at submit


_RULES = {
    WebhookTargets.PUBLIC: _Rule(("https",), _public_refusal, "webhooks go to public addresses only"),
    WebhookTargets.LOOPBACK: _Rule(
        ("http", "https"),
        _loopback_refusal,
        "ALLOW_PRIVATE_WEBHOOKS=loopback allows loopback addresses (127.0.0.0/8, ::1) only",
    ),
}


class RefusedAddress(NewConnectionError):
    """The connection reached an address webhooks may not go to; nothing was sent on it."""

    def __init__(self, conn: HTTPConnection, detail: str) -> None:
        super().__init__(conn, detail)
        self.detail = detail


class _CheckedConnection(HTTPConnection):
    """Checks the address a connection reached before a byte is sent: the host was checked before, but DNS may
    answer differently for the connection itself (rebinding)."""

    targets: ClassVar[WebhookTargets]

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        peer = ipaddress.ip_address(sock.getpeername()[0].split("%")[0])
        if (reason := _RULES[self.targets].refusal(peer)) is not None:
            sock.close()
            raise RefusedAddress(self, f"'{self.host}' led to {peer}, which {reason}")
        return sock


def _checked_pools(targets: WebhookTargets) -> dict[str, type[HTTPConnectionPool]]:
    """urllib3 pools for http and https whose connections check the address reached under `targets`' rule."""

    def checked(pool: type[HTTPConnectionPool]) -> type[HTTPConnectionPool]:
        name = f"Checked{pool.ConnectionCls.__name__}"
        connection = type(name, (_CheckedConnection, pool.ConnectionCls), {"targets": targets})
        return type(f"Checked{pool.__name__}", (pool,), {"ConnectionCls": connection})

    return {"http": checked(HTTPConnectionPool), "https": checked(HTTPSConnectionPool)}


_CHECKED_POOLS = {targets: _checked_pools(targets) for targets in WebhookTargets}


class _CheckedAdapter(HTTPAdapter):
    def __init__(self, targets: WebhookTargets) -> None:
        self.targets = targets
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _CHECKED_POOLS[self.targets]


def checked_session(targets: WebhookTargets) -> requests.Session:
    """A session that connects only to addresses `targets` allows, over http and https (check_url decides which
    schemes)."""
    session = requests.Session()
    # No proxy or .netrc from the environment: through a proxy, the address checked would be the proxy's.
    session.trust_env = False
    adapter = _CheckedAdapter(targets)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def _refused_address(exc: requests.ConnectionError) -> RefusedAddress | None:
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return reason if isinstance(reason, RefusedAddress) else None


# A host name as DNS spells it (RFC 1123 labels, ASCII: an internationalised name goes in its xn-- form).
_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_PRINTABLE_ASCII = re.compile(r"[!-~]+")


def _parsed(url: str) -> SplitResult:
    """The URL's parts, or RequestInvalid saying what is wrong with its form (before any name is resolved)."""
    if len(url) > MAX_WEBHOOK_URL_LENGTH:
        raise RequestInvalid(f"Header '{HEADER}' is longer than {MAX_WEBHOOK_URL_LENGTH} characters")
    if not _PRINTABLE_ASCII.fullmatch(url):
        raise RequestInvalid(
            f"Header '{HEADER}' must be a URL of printable ASCII characters without spaces (percent-encode the "
            "rest; write an internationalised host name in its xn-- form)"
        )
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (parsed on access: a port out of range or not a number raises here)
    except ValueError as exc:
        raise RequestInvalid(f"Header '{HEADER}' is not a valid URL: {exc}") from None
    return parts


def _check_host(host: str) -> None:
    try:
        ipaddress.ip_address(host)
        return
    except ValueError:
        pass
    labels = host.removesuffix(".").split(".")
    if len(host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise RequestInvalid(
            f"Header '{HEADER}': host '{host}' is not a valid host name (labels of 1 to 63 letters, digits or "
            "hyphens, separated by single dots) or IP address"
        )


def check_url(url: str, *, targets: WebhookTargets) -> str:
    """The URL if it may receive webhooks under `targets` (ALLOW_PRIVATE_WEBHOOKS), else RequestInvalid naming the
    reason."""
    rule = _RULES[targets]
    parts = _parsed(url)
    if parts.scheme not in rule.schemes:
        raise RequestInvalid(f"Header '{HEADER}' must be an {' or '.join(f'{s}://' for s in rule.schemes)} URL")
    if not parts.hostname:
        raise RequestInvalid(f"Header '{HEADER}' has no host")
    _check_host(parts.hostname)
    addresses = _addresses(parts.hostname)
    if not addresses:
        raise RequestInvalid(f"Header '{HEADER}': host '{parts.hostname}' does not resolve")
    for address in addresses:
        if (reason := rule.refusal(address)) is not None:
            raise RequestInvalid(f"Header '{HEADER}': {_explained(parts.hostname, address, reason)}; {rule.summary}")
    return url


def _explained(host: str, address: Address, reason: str) -> str:
    """The refusal, naming the address as the client wrote it, or the host and what it resolved to."""
    try:
        if ipaddress.ip_address(host) == address:
            return f"address {address} {reason}"
    except ValueError:
        pass
    return f"host '{host}' resolves to {address}, which {reason}"


def message_id(payload: dict[str, Any], body: bytes) -> str:
    """The `webhook-id` of a notification: its job and the status it reports, so every attempt and redelivery of one
    notification carries the same id. Without a job id (not sent by the worker), the body's digest."""
    job_id, status = payload.get("request_id"), payload.get("status")
    if isinstance(job_id, str) and job_id and isinstance(status, str) and status:
        return f"msg_{job_id}_{status.lower()}"
    return f"msg_{hashlib.sha256(body).hexdigest()[:32]}"


def signer(secret: str) -> Webhook:
    """Signs under a `whsec_` secret as the Standard Webhooks libraries verify; ValueError if it cannot be decoded
    (or is empty): Standard Webhooks keys are the base64-decoded part after `whsec_`."""
    try:
        return Webhook(secret)
    except (ValueError, EmptyWebhookSecretError) as exc:  # binascii.Error is a ValueError
        raise ValueError(f"not a whsec_ base64 secret ({exc})") from None


def standard_headers(signing: Webhook, msg_id: str, body: bytes, timestamp: int) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt."""
    signature = signing.sign(msg_id, datetime.fromtimestamp(timestamp, UTC), body.decode())
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp), "webhook-signature": signature}


def legacy_signature(secret: str, body: bytes, timestamp: int) -> str:
    """The deprecated `x-webhook-signature` value."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify_legacy(
    secret: str, body: bytes, header: str, *, tolerance_seconds: int = 300, now: float | None = None
) -> bool:
    """What a receiver of the deprecated `x-webhook-signature` does: recompute, compare in constant time, reject
    stale timestamps. New receivers verify the Standard Webhooks headers with its libraries instead."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        timestamp = int(fields["t"])
    except (ValueError, KeyError):
        return False
    if abs((now or time.time()) - timestamp) > tolerance_seconds:
        return False
    return hmac.compare_digest(legacy_signature(secret, body, timestamp), header)


def signed_headers(secret: str, signing: Webhook, msg_id: str, body: bytes, timestamp: int) -> dict[str, str]:
    """Every header of one attempt: content type, the Standard Webhooks ones and the deprecated one."""
    return {
        "Content-Type": "application/json",
        **standard_headers(signing, msg_id, body, timestamp),
        LEGACY_SIGNATURE_HEADER: legacy_signature(secret, body, timestamp),
    }


def deliver(
    url: str,
    payload: dict[str, Any],
    secret: str,
    *,
    targets: WebhookTargets,
    session: requests.Session | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """POST the payload until a 2xx, with backoff; returns the outcome to record on the job. Every attempt carries
    the same `webhook-id` and a fresh timestamp and signatures."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    try:
        signing = signer(secret)
    except ValueError as refused:
        logger.warning("Webhook not sent: the tenant's secret cannot sign it", extra={"url": url})
        return {"delivered": False, "attempts": 0, "error": f"the tenant's webhook secret is {refused}; rotate it"}
    msg_id = message_id(payload, body)
    http = session or checked_session(targets)
    last = ""
    for attempt, pause in enumerate(BACKOFF_SECONDS, start=1):
        sleep(pause)
        try:
            check_url(url, targets=targets)  # again: DNS may have changed since submit
            response = http.post(
                url,
                data=body,
                headers=signed_headers(secret, signing, msg_id, body, int(time.time())),
                timeout=(3.05, 10),
                allow_redirects=False,
            )
        except RequestInvalid as refused:
            return {"delivered": False, "attempts": attempt, "error": refused.message}
        except requests.ConnectionError as exc:
            if (blocked := _refused_address(exc)) is not None:
                logger.warning("Webhook refused: its host led to an address it may not go to", extra={"url": url})
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


class WebhookSender:
    """The Webhooks port: the URL rule of `targets` at submit, and signed delivery with retries."""

    def __init__(self, targets: WebhookTargets) -> None:
        self.targets = targets

    def check(self, url: str) -> str:
        return check_url(url, targets=self.targets)

    def deliver(self, url: str, payload: dict[str, Any], secret: str) -> dict[str, Any]:
        return deliver(url, payload, secret, targets=self.targets)
