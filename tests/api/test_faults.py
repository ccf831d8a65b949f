"""Fault injection: each failure has an asserted outcome (status, message, upstream attempts, metric), and none
loses an image that cost credits or charges a tenant for nothing."""

import json
from datetime import UTC, datetime, timedelta

import pytest
import requests
import responses
from botocore.exceptions import ClientError

from local.fake_segmind import render
from segmind_proxy.domain.image_formats import sniff_format
from tests.support.aws import SECRET_NAME, aws_failing, aws_unreachable, make_tenant
from tests.support.lambda_events import api_event, body_bytes, body_json, header
from tests.support.segmind import SAMPLE, UPSTREAM_URL

SMALL = SAMPLE | {"width": 256, "height": 256}
JPEG = render("x", 1, 64, 64, "jpeg", 80)


def emitted(capsys):
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]


def error_kinds(blobs):
    return [blob["ErrorKind"] for blob in blobs if "ErrorKind" in blob]


def usage(invoke):
    return body_json(invoke(api_event(method="GET", path="/v1/usage", api_key_id="key-acme")))


@pytest.fixture
def tenant(tenancy):
    return make_tenant(tenancy, budget_credits=1.0)


@pytest.mark.parametrize(
    ("fault", "status", "message", "attempts", "kind"),
    [
        ({"body": requests.ReadTimeout("slow")}, 504, "Upstream timeout", 3, "timeout"),
        ({"body": requests.ConnectionError("connection reset by peer")}, 502, "unreachable", 3, "connection"),
        ({"status": 500, "json": {"error": "boom"}}, 502, "HTTP 500", 3, "server_error"),
        ({"status": 502, "body": "<html>bad gateway</html>"}, 502, "HTTP 502", 3, "server_error"),
        ({"status": 503, "json": {"error": "busy"}}, 502, "HTTP 503", 3, "server_error"),
        ({"status": 406, "json": {"error": "Not enough credits"}}, 503, "out of credits", 1, "credits"),
        ({"status": 200, "json": {"image": "bm90IGFuIGltYWdl"}}, 502, "without a valid image", 1, "invalid_response"),
        (
            {"status": 200, "body": JPEG[: len(JPEG) // 2], "content_type": "image/jpeg"},
            502,
            "without a valid image",
            1,
            "invalid_response",
        ),
        ({"body": requests.exceptions.ChunkedEncodingError("truncated")}, 502, "cut off", 1, "invalid_response"),
    ],
)
def test_upstream_faults(invoke, upstream, tenant, capsys, fault, status, message, attempts, kind):
    for _ in range(attempts + 2):
        upstream.mock.add(responses.POST, UPSTREAM_URL, **fault)
    response = invoke(api_event(SMALL, api_key_id="key-acme"))
    assert response["statusCode"] == status
    assert message in body_json(response)["error"]
    assert len(upstream.calls()) == attempts
    assert error_kinds(emitted(capsys)) == [kind] * attempts
    spent = usage(invoke)
    assert spent["credits_spent"] == 0 and spent["credits_reserved"] == 0  # nothing charged for nothing


def test_429_with_reset_header_waits_then_succeeds(invoke, upstream, tenant, capsys):
    reset = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    upstream.fail(429, {"error": "rate"}, headers={"x-rate-limit-reset-at-utc": reset})
    upstream.succeed()
    response = invoke(api_event(SMALL, api_key_id="key-acme"))
    assert response["statusCode"] == 200 and len(upstream.calls()) == 2
    assert error_kinds(emitted(capsys)) == ["rate_limited"]
    assert usage(invoke)["images_generated"] == 1


def test_401_then_success_after_key_rotation(invoke, upstream, tenant, aws):
    aws["secrets"].put_secret_value(SecretId=SECRET_NAME, SecretString="sg_rotated")
    upstream.fail(401)
    upstream.succeed()
    response = invoke(api_event(SMALL, api_key_id="key-acme"))
    assert response["statusCode"] == 200
    assert [c.request.headers["x-api-key"] for c in upstream.calls()][-1] == "sg_rotated"


@pytest.mark.parametrize("broken", ["read", "write", "both"])
def test_storage_unavailable_still_delivers_the_paid_image(invoke, upstream, tenant, capsys, monkeypatch, broken):
    if broken in ("read", "both"):
        aws_failing(monkeypatch, "GetObject")
    if broken in ("write", "both"):
        aws_failing(monkeypatch, "PutObject")
    upstream.succeed()
    response = invoke(api_event(SMALL, api_key_id="key-acme"))
    assert response["statusCode"] == 200 and sniff_format(body_bytes(response)) == "jpeg"
    storage_errors = [b for b in emitted(capsys) if "StorageErrors" in b]
    assert storage_errors
    assert usage(invoke)["images_generated"] == 1  # charged once, for an image the tenant received


def test_an_answer_that_can_neither_be_inlined_nor_stored_is_503_and_refunded(
    invoke, upstream, tenant, monkeypatch, capsys
):
    aws_failing(monkeypatch, "PutObject")
    monkeypatch.setenv("INLINE_RESPONSE_MAX_BYTES", "1000")  # no image fits: it must go by URL, which needs S3
    from segmind_proxy.settings import get_settings

    get_settings.cache_clear()
    upstream.succeed()
    response = invoke(api_event(SMALL, api_key_id="key-acme"))
    assert response["statusCode"] == 503
    assert "nothing was charged" in body_json(response)["error"]
    assert len(upstream.calls()) == 1
    spent = usage(invoke)
    assert (spent["credits_spent"], spent["credits_reserved"], spent["images_generated"]) == (0, 0, 0)
    assert spent["failed_generations"] == 1  # Segmind was paid; the tenant, who got nothing, was not charged


def test_secrets_manager_unavailable_is_502_with_no_call_and_no_charge(invoke, upstream, tenant, monkeypatch):
    from segmind_proxy.adapters.aws_clients import secrets_manager

    monkeypatch.setattr(secrets_manager(), "get_secret_value", aws_unreachable)
    response = invoke(api_event(SMALL, api_key_id="key-acme"))
    assert response["statusCode"] == 502
    assert "could not read its Segmind API key" in body_json(response)["error"]
    assert upstream.calls() == []
    assert usage(invoke)["credits_reserved"] == 0


THROTTLED = ClientError(
    {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}}, "UpdateItem"
)
# What the usage ledger's updates write, told apart by their update expressions.
RESERVING = "SET #entry"  # a reservation is recorded under its holder
SETTLING = "#upstream_calls"  # a settlement counts the upstream call it charges for
COUNTING_A_HIT = "#cache_hits"


def ledger_failing(monkeypatch, update: str, error: Exception | None = None) -> None:
    """The usage ledger's updates whose expression holds `update` fail (unreachable, or with `error`)."""
    aws_failing(monkeypatch, "UpdateItem", lambda params: update in params.get("UpdateExpression", ""), error)


def test_dynamodb_throttling_before_the_call_refuses_without_spending(invoke, upstream, tenant, monkeypatch):
    ledger_failing(monkeypatch, RESERVING, THROTTLED)
    response = invoke(api_event(SMALL, api_key_id="key-acme"))
    assert response["statusCode"] == 503 and "nothing was charged" in body_json(response)["error"]
    assert upstream.calls() == []


def test_dynamodb_throttling_after_the_call_still_delivers(invoke, upstream, tenant, monkeypatch, capsys):
    ledger_failing(monkeypatch, SETTLING, THROTTLED)
    upstream.succeed()
    response = invoke(api_event(SMALL, api_key_id="key-acme"))
    assert response["statusCode"] == 200 and sniff_format(body_bytes(response)) == "jpeg"
    assert any("LedgerErrors" in blob for blob in emitted(capsys))
    monkeypatch.undo()
    assert usage(invoke)["credits_reserved"] == pytest.approx(0.004)  # held: over-counted, never under


def test_hit_survives_a_ledger_outage(invoke, upstream, tenant, monkeypatch):
    upstream.succeed()
    invoke(api_event(SMALL, api_key_id="key-acme"))
    ledger_failing(monkeypatch, COUNTING_A_HIT, THROTTLED)
    hit = invoke(api_event(SMALL, api_key_id="key-acme"))
    assert hit["statusCode"] == 200 and header(hit, "x-cache") == "HIT"


def test_ledger_unreachable_after_the_call_still_delivers(invoke, upstream, tenant, monkeypatch):
    ledger_failing(monkeypatch, SETTLING)
    upstream.succeed()
    response = invoke(api_event(SMALL, api_key_id="key-acme"))
    assert response["statusCode"] == 200 and sniff_format(body_bytes(response)) == "jpeg"


def test_ledger_unreachable_before_the_call_is_503_without_spending(invoke, upstream, tenant, monkeypatch):
    ledger_failing(monkeypatch, RESERVING)
    response = invoke(api_event(SMALL, api_key_id="key-acme"))
    assert response["statusCode"] == 503 and upstream.calls() == []


def test_registry_unreachable_is_a_segmind_style_503(invoke, upstream, tenant, monkeypatch):
    aws_failing(monkeypatch, "GetItem")  # the tenant's key or profile
    response = invoke(api_event(SMALL, api_key_id="key-acme"))
    assert response["statusCode"] == 503 and "registry" in json.loads(response["body"])["error"]
    assert upstream.calls() == []
