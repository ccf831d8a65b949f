"""Webhook targets (which addresses a webhook may go to, at submit, at delivery and on the connection itself), and
signatures: receivers verify deliveries with the Standard Webhooks library, as docs/api.md tells them to."""

from __future__ import annotations

import base64
import json
import secrets
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler
from types import SimpleNamespace

import pytest
import urllib3.connection
from pydantic import ValidationError
from standardwebhooks import Webhook, WebhookVerificationError

from local.template import load_template
from segmind_proxy.adapters import webhooks
from segmind_proxy.domain.errors import RequestInvalid
from segmind_proxy.domain.tenants import new_webhook_secret
from segmind_proxy.settings import Settings, WebhookTargets
from tests.support.http_server import serving

SECRET = "whsec_" + base64.b64encode(bytes(range(24))).decode()  # a secret in the form new tenants get

# Teredo hides the client's IPv4 address in the last 32 bits, XORed with all ones (server 65.54.227.120 here).
TEREDO_SERVER = "2001:0:4136:e378:8000:63bf"

REFUSED = [
    # IPv4-mapped (::ffff:0:0/96): judged by the IPv4 address.
    ("::ffff:127.0.0.1", "embeds 127.0.0.1 (IPv4-mapped), which is loopback"),
    ("::ffff:10.0.0.1", "embeds 10.0.0.1 (IPv4-mapped), which is private"),
    ("::ffff:169.254.169.254", "embeds 169.254.169.254 (IPv4-mapped), which is link-local"),
    # IPv4-compatible (::/96, deprecated): refused, naming what it carries.
    ("::127.0.0.1", "embeds 127.0.0.1 (IPv4-compatible), which is loopback"),
    ("::10.0.0.1", "embeds 10.0.0.1 (IPv4-compatible), which is private"),
    ("::169.254.169.254", "embeds 169.254.169.254 (IPv4-compatible), which is link-local"),
    ("::8.8.8.8", "is IPv4-compatible (deprecated), refused whatever it embeds"),
    # NAT64's well-known prefix (64:ff9b::/96): the last 32 bits.
    ("64:ff9b::7f00:1", "embeds 127.0.0.1 (NAT64), which is loopback"),
    ("64:ff9b::a00:1", "embeds 10.0.0.1 (NAT64), which is private"),
    ("64:ff9b::a9fe:a9fe", "embeds 169.254.169.254 (NAT64), which is link-local"),
    # NAT64's local-use prefix (64:ff9b:1::/48, RFC 8215): a network's own translator, never public.
    ("64:ff9b:1::7f00:1", "is in 64:ff9b:1::/48 (local-use NAT64)"),
    ("64:ff9b:1::808:808", "is in 64:ff9b:1::/48 (local-use NAT64)"),
    # 6to4 (2002::/16): the IPv4 address in bits 16-48.
    ("2002:7f00:1::", "embeds 127.0.0.1 (6to4), which is loopback"),
    ("2002:c0a8:101::1", "embeds 192.168.1.1 (6to4), which is private"),
    ("2002:a9fe:a9fe::", "embeds 169.254.169.254 (6to4), which is link-local"),
    # Teredo (2001::/32): refused, naming the client address it carries.
    (f"{TEREDO_SERVER}:80ff:fffe", "embeds 127.0.0.1 (Teredo), which is loopback"),
    (f"{TEREDO_SERVER}:f5ff:fffe", "embeds 10.0.0.1 (Teredo), which is private"),
    (f"{TEREDO_SERVER}:5601:5601", "embeds 169.254.169.254 (Teredo), which is link-local"),
    (f"{TEREDO_SERVER}:f7f7:f7f7", "is Teredo (deprecated), refused whatever it embeds"),
    # Other non-public IPv6.
    ("::", "is unspecified"),
    ("::1", "is loopback"),
    ("ff02::1", "is multicast"),
    ("fe80::1", "is link-local"),
    ("fec0::1", "is site-local (deprecated)"),
    ("fd12:3456::1", "is unique local (private)"),
    ("100::1", "is discard-only"),
    ("2001:2::1", "is in 2001::/23 (IETF protocol assignments)"),
    ("2001:db8::1", "is documentation"),
    ("3fff::1", "is documentation"),
    ("5f00::1", "is reserved (outside 2000::/3, the global unicast range)"),
    ("4000::1", "is reserved (outside 2000::/3, the global unicast range)"),
    # Non-public IPv4.
    ("0.0.0.0", "is in 0.0.0.0/8 (this network)"),
    ("127.0.0.1", "is loopback"),
    ("10.1.2.3", "is private"),
    ("172.16.0.1", "is private"),
    ("192.168.1.1", "is private"),
    ("169.254.169.254", "is link-local"),
    ("100.64.0.1", "is shared address space (carrier-grade NAT)"),
    ("192.0.0.9", "is in 192.0.0.0/24 (IETF protocol assignments)"),
    ("192.88.99.1", "is in 192.88.99.0/24 (6to4 relays, deprecated)"),
    ("198.18.0.1", "is benchmarking"),
    ("203.0.113.7", "is documentation"),
    ("224.0.0.1", "is multicast"),
    ("240.0.0.1", "is reserved"),
    ("255.255.255.255", "is reserved"),
]

ALLOWED = [
    "8.8.8.8",
    "1.1.1.1",
    "2606:4700::1111",
    "2001:4860:4860::8888",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",  # NAT64 of 8.8.8.8
    "2002:808:808::",  # 6to4 of 8.8.8.8
]


def literal(address: str) -> str:
    return f"https://[{address}]/hook" if ":" in address else f"https://{address}/hook"


def resolving(monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[str]]) -> None:
    """The resolver the webhook checks use answers these addresses for these hosts (and resolves the rest as ever:
    literal addresses without a lookup)."""
    real = socket.getaddrinfo

    def getaddrinfo(host: str, *args: object, **kwargs: object) -> list[tuple]:
        if host not in answers:
            return real(host, *args, **kwargs)
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, 443))
            for a in answers[host]
        ]

    monkeypatch.setattr(webhooks.socket, "getaddrinfo", getaddrinfo)


@pytest.mark.parametrize(("address", "reason"), REFUSED)
def test_a_non_public_address_is_refused_at_submit_with_its_reason(address, reason):
    with pytest.raises(RequestInvalid) as refused:
        webhooks.check_url(literal(address), targets=WebhookTargets.PUBLIC)
    message = refused.value.message
    assert message.startswith("Header 'x-webhook-url': address ")
    assert f" {reason}; webhooks go to public addresses only" in message


@pytest.mark.parametrize("address", ALLOWED)
def test_a_public_address_is_allowed_at_submit(address):
    assert webhooks.check_url(literal(address), targets=WebhookTargets.PUBLIC) == literal(address)


def test_a_host_is_refused_if_any_of_its_addresses_is_not_public(monkeypatch):
    resolving(monkeypatch, {"hooks.example": ["93.184.216.34", "64:ff9b::7f00:1"]})
    with pytest.raises(RequestInvalid) as refused:
        webhooks.check_url("https://hooks.example/done", targets=WebhookTargets.PUBLIC)
    assert refused.value.message == (
        "Header 'x-webhook-url': host 'hooks.example' resolves to 64:ff9b::7f00:1, which embeds 127.0.0.1 (NAT64), "
        "which is loopback; webhooks go to public addresses only"
    )


class NoPost:
    """A session that must not be used: the delivery is refused before any request."""

    def post(self, *args: object, **kwargs: object) -> None:
        raise AssertionError("a request was sent to a refused address")


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("2002:7f00:1::", "embeds 127.0.0.1 (6to4), which is loopback"),
        ("64:ff9b::a9fe:a9fe", "embeds 169.254.169.254 (NAT64), which is link-local"),
    ],
)
def test_a_host_that_resolves_to_an_embedded_private_address_by_delivery_gets_nothing(monkeypatch, address, reason):
    resolving(monkeypatch, {"hooks.example": [address]})  # public at submit, say; this is the answer at delivery
    outcome = webhooks.deliver(
        "https://hooks.example/done",
        {"status": "COMPLETED"},
        SECRET,
        targets=WebhookTargets.PUBLIC,
        session=NoPost(),
    )
    assert outcome["delivered"] is False and outcome["attempts"] == 1
    assert f"resolves to {address}, which {reason}" in outcome["error"]


class ReachedSocket:
    """The socket of a connection that reached `peer`: nothing may be sent on it, and it must be closed."""

    def __init__(self, peer: str) -> None:
        self.peer, self.closed = peer, False

    def getpeername(self) -> tuple:
        return (self.peer, 443, 0, 0)

    def close(self) -> None:
        self.closed = True

    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"the connection used its socket ({name}) after reaching {self.peer}")


@pytest.mark.parametrize(
    ("peer", "reason"),
    [
        ("64:ff9b::7f00:1", "embeds 127.0.0.1 (NAT64), which is loopback"),
        ("2002:a00:1::", "embeds 10.0.0.1 (6to4), which is private"),
        ("fec0::1", "is site-local (deprecated)"),
    ],
)
def test_a_connection_that_reaches_an_embedded_private_address_is_closed_unused(monkeypatch, peer, reason):
    """The checks see a public address; DNS answers differently for the connection itself (rebinding)."""
    reached = ReachedSocket(peer)
    resolving(monkeypatch, {"hooks.example": ["93.184.216.34"]})
    monkeypatch.setattr(urllib3.connection.HTTPSConnection, "_new_conn", lambda self: reached)
    outcome = webhooks.deliver(
        "https://hooks.example/done",
        {"status": "COMPLETED"},
        SECRET,
        targets=WebhookTargets.PUBLIC,
        sleep=lambda s: None,
    )
    assert outcome == {
        "delivered": False,
        "attempts": 1,
        "error": f"refused: 'hooks.example' led to {peer}, which {reason}",
    }
    assert reached.closed


@pytest.mark.parametrize(
    ("value", "targets"),
    [(None, WebhookTargets.PUBLIC), ("false", WebhookTargets.PUBLIC), (" Loopback ", WebhookTargets.LOOPBACK)],
)
def test_allow_private_webhooks_is_public_only_unless_loopback(value, targets):
    environment = {} if value is None else {"ALLOW_PRIVATE_WEBHOOKS": value}
    assert Settings.model_validate(environment).webhook_targets is targets


@pytest.mark.parametrize("value", ["true", "1", "private"])
def test_there_is_no_any_address_webhook_rule(value):
    with pytest.raises(ValidationError, match="'false' or 'loopback'"):
        Settings.model_validate({"ALLOW_PRIVATE_WEBHOOKS": value})


def test_the_template_leaves_functions_on_the_public_only_rule():
    template = load_template()
    environments = [template["Globals"]["Function"]["Environment"]["Variables"]]
    environments += [
        resource["Properties"].get("Environment", {}).get("Variables", {})
        for resource in template["Resources"].values()
        if resource["Type"] == "AWS::Serverless::Function"
    ]
    assert all(environment.get("ALLOW_PRIVATE_WEBHOOKS", "false") == "false" for environment in environments)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080/done", "https://127.0.0.2/done", "http://[::1]:8080/done", "http://localhost/done"]
)
def test_loopback_rule_allows_loopback_receivers_over_http_or_https(monkeypatch, url):
    resolving(monkeypatch, {"localhost": ["127.0.0.1", "::1"]})
    assert webhooks.check_url(url, targets=WebhookTargets.LOOPBACK) == url


LOOPBACK_ONLY = "ALLOW_PRIVATE_WEBHOOKS=loopback allows loopback addresses (127.0.0.0/8, ::1) only"


@pytest.mark.parametrize(
    ("url", "refusal"),
    [
        ("http://10.0.0.1/done", "address 10.0.0.1 is not loopback"),
        ("http://192.168.1.20:8080/done", "address 192.168.1.20 is not loopback"),
        ("http://169.254.169.254/latest", "address 169.254.169.254 is not loopback"),
        ("http://8.8.8.8/done", "address 8.8.8.8 is not loopback"),
        ("https://[2606:4700::1111]/done", "address 2606:4700::1111 is not loopback"),
        ("http://[64:ff9b::7f00:1]/done", "address 64:ff9b::7f00:1 is not loopback"),
        ("http://mixed.test/done", "host 'mixed.test' resolves to 10.0.0.1, which is not loopback"),
    ],
)
def test_loopback_rule_refuses_every_other_address(monkeypatch, url, refusal):
    resolving(monkeypatch, {"mixed.test": ["127.0.0.1", "10.0.0.1"]})
    with pytest.raises(RequestInvalid) as refused:
        webhooks.check_url(url, targets=WebhookTargets.LOOPBACK)
    assert refused.value.message == f"Header 'x-webhook-url': {refusal}; {LOOPBACK_ONLY}"


def test_loopback_rule_takes_http_or_https_only():
    with pytest.raises(RequestInvalid, match="must be an http:// or https:// URL"):
        webhooks.check_url("ftp://127.0.0.1/done", targets=WebhookTargets.LOOPBACK)


def test_loopback_rule_delivers_to_a_loopback_receiver_over_http():
    received: list[bytes] = []
    headers: list[dict[str, str]] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(self.rfile.read(int(self.headers["Content-Length"])))
            headers.append(dict(self.headers))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    with serving(Receiver) as receiver:
        outcome = webhooks.deliver(f"{receiver}/done", {"status": "COMPLETED"}, SECRET, targets=WebhookTargets.LOOPBACK)
    assert outcome == {"delivered": True, "attempts": 1, "status": 204}
    assert received == [b'{"status":"COMPLETED"}']
    assert Webhook(SECRET).verify(received[0], headers[0]) == {"status": "COMPLETED"}  # as it came over the wire


def test_loopback_rule_closes_a_connection_that_reached_another_address(monkeypatch):
    """The checks see loopback; the connection itself reaches a private address (rebinding): refused, unused."""
    reached = ReachedSocket("10.0.0.1")
    resolving(monkeypatch, {"hooks.local": ["127.0.0.1"]})
    monkeypatch.setattr(urllib3.connection.HTTPConnection, "_new_conn", lambda self: reached)
    outcome = webhooks.deliver(
        "http://hooks.local/done", {"status": "COMPLETED"}, SECRET, targets=WebhookTargets.LOOPBACK
    )
    assert outcome["error"] == "refused: 'hooks.local' led to 10.0.0.1, which is not loopback"
    assert reached.closed


def test_a_webhook_host_that_rebinds_to_a_private_address_gets_no_byte(monkeypatch):
    """The checks see a public address; the connection reaches loopback: refused before anything is sent."""
    import ipaddress
    import socket

    from segmind_proxy.adapters import webhooks
    from segmind_proxy.settings import WebhookTargets

    listener = socket.create_server(("127.0.0.1", 0))
    received: list[bytes] = []

    def accept():
        connection, _ = listener.accept()
        with connection:
            connection.settimeout(5)
            received.append(connection.recv(1024))

    accepting = threading.Thread(target=accept, daemon=True)
    accepting.start()
    monkeypatch.setattr(webhooks, "_addresses", lambda host: [ipaddress.ip_address("93.184.216.34")])
    port = listener.getsockname()[1]
    outcome = webhooks.deliver(
        f"https://localhost:{port}/hook",
        {"status": "COMPLETED"},
        SECRET,
        targets=WebhookTargets.PUBLIC,
        sleep=lambda s: None,
    )
    accepting.join(timeout=10)  # the refused connection is accepted and read to its end
    listener.close()
    assert outcome["delivered"] is False and outcome["attempts"] == 1
    assert outcome["error"] == "refused: 'localhost' led to 127.0.0.1, which is loopback"
    assert received == [b""]  # connected, then closed without a byte


# Signatures: Standard Webhooks (webhook-id, webhook-timestamp, webhook-signature), and the deprecated header.

JOB = {"request_id": "0f8e2b6c5d7a4f1e9b3c2a1d0e9f8a7b", "status": "COMPLETED", "output": "https://images/1.jpeg"}


class Recorded:
    """A session standing for the receiver: records each POST and answers the next of `statuses` (then 204)."""

    def __init__(self, *statuses: int) -> None:
        self.statuses, self.posts = list(statuses), []

    def post(self, url: str, *, data: bytes, headers: dict[str, str], **kwargs: object) -> SimpleNamespace:
        self.posts.append(SimpleNamespace(url=url, body=data, headers=headers))
        return SimpleNamespace(status_code=self.statuses.pop(0) if self.statuses else 204)


def delivered(monkeypatch, payload: dict, secret: str, *statuses: int) -> tuple[dict, list[SimpleNamespace]]:
    """Delivers to a public host on a clock that the backoff pauses move on; the outcome and what was posted."""
    resolving(monkeypatch, {"hooks.example": ["93.184.216.34"]})
    clock = [time.time()]
    monkeypatch.setattr(webhooks, "time", SimpleNamespace(time=lambda: clock[0]))
    session = Recorded(*statuses)
    outcome = webhooks.deliver(
        "https://hooks.example/done",
        payload,
        secret,
        targets=WebhookTargets.PUBLIC,
        session=session,
        sleep=lambda seconds: clock.__setitem__(0, clock[0] + seconds),
    )
    return outcome, session.posts


def test_a_delivery_verifies_with_the_standard_webhooks_library(monkeypatch):
    outcome, [post] = delivered(monkeypatch, JOB, SECRET)
    assert outcome == {"delivered": True, "attempts": 1, "status": 204}
    assert Webhook(SECRET).verify(post.body, post.headers) == JOB
    assert post.headers["webhook-id"] == f"msg_{JOB['request_id']}_completed"
    assert post.headers["webhook-signature"].startswith("v1,")
    assert post.headers["Content-Type"] == "application/json"


def test_a_new_tenants_secret_is_base64_of_24_random_bytes_and_verifies(monkeypatch):
    secret = new_webhook_secret()
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:], validate=True)) == 24
    assert new_webhook_secret() != secret
    _, [post] = delivered(monkeypatch, JOB, secret)
    assert Webhook(secret).verify(post.body, post.headers) == JOB


def test_an_existing_hex_secret_still_signs_and_the_library_verifies_it_as_it_is(monkeypatch):
    """Secrets made before were `whsec_` + 48 hex characters: base64 characters, decoded to 36 bytes as the
    libraries decode them, so a receiver keeps its secret string."""
    hex_secret = f"whsec_{secrets.token_hex(24)}"
    _, [post] = delivered(monkeypatch, JOB, hex_secret)
    assert Webhook(hex_secret).verify(post.body, post.headers) == JOB
    assert webhooks.verify_legacy(hex_secret, post.body, post.headers["x-webhook-signature"])


def test_a_retry_keeps_the_webhook_id_with_a_fresh_timestamp_and_signature(monkeypatch):
    outcome, posts = delivered(monkeypatch, JOB, SECRET, 500, 503)
    assert outcome == {"delivered": True, "attempts": 3, "status": 204}
    assert len({post.headers["webhook-id"] for post in posts}) == 1
    stamps = [int(post.headers["webhook-timestamp"]) for post in posts]
    assert stamps[1] - stamps[0] == 2 and stamps[2] - stamps[1] == 4  # the backoff pauses
    assert len({post.headers["webhook-signature"] for post in posts}) == 3
    for post in posts:
        assert Webhook(SECRET).verify(post.body, post.headers) == JOB


def test_a_redelivered_notification_keeps_its_id_even_with_fresh_links(monkeypatch):
    """A worker that stopped after sending, before recording it, notifies again, with newly presigned links: the
    receiver sees the same id and can drop it. Another status of the job is another message."""
    _, [first] = delivered(monkeypatch, JOB, SECRET)
    _, [again] = delivered(monkeypatch, JOB | {"output": "https://images/1.jpeg?signed=2"}, SECRET)
    _, [failed] = delivered(monkeypatch, {"request_id": JOB["request_id"], "status": "FAILED"}, SECRET)
    assert first.body != again.body and first.headers["webhook-id"] == again.headers["webhook-id"]
    assert failed.headers["webhook-id"] == f"msg_{JOB['request_id']}_failed"


def test_a_tampered_body_or_another_secret_is_refused(monkeypatch):
    _, [post] = delivered(monkeypatch, JOB, SECRET)
    tampered = post.body.replace(b"COMPLETED", b"FAILED")
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(tampered, post.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_webhook_secret()).verify(post.body, post.headers)
    with pytest.raises(WebhookVerificationError):  # the id is signed too
        Webhook(SECRET).verify(post.body, post.headers | {"webhook-id": "msg_other"})
    assert not webhooks.verify_legacy(SECRET, tampered, post.headers["x-webhook-signature"])


def test_the_deprecated_signature_header_is_still_sent_and_verifies(monkeypatch):
    _, [post] = delivered(monkeypatch, JOB, SECRET)
    header = post.headers["x-webhook-signature"]
    assert header.startswith(f"t={post.headers['webhook-timestamp']},v1=")
    assert webhooks.verify_legacy(SECRET, post.body, header)
    assert not webhooks.verify_legacy("whsec_wrong", post.body, header)
    stale = time.time() + 301
    assert not webhooks.verify_legacy(SECRET, post.body, header, now=stale)


def test_the_body_is_compact_json_of_the_payload(monkeypatch):
    _, [post] = delivered(monkeypatch, JOB, SECRET)
    assert post.body == json.dumps(JOB, separators=(",", ":")).encode()


@pytest.mark.parametrize("secret", ["whsec_", "whsec_x"])
def test_a_secret_that_cannot_sign_sends_nothing(secret):
    outcome = webhooks.deliver(
        "https://hooks.example/done", JOB, secret, targets=WebhookTargets.PUBLIC, session=NoPost()
    )
    assert outcome["delivered"] is False and outcome["attempts"] == 0
    assert outcome["error"].startswith("the tenant's webhook secret is not a whsec_ base64 secret")
