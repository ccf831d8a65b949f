"""Idempotency-Key: a retry returns the same answer with no second upstream call and no second charge."""

import pytest

from tests.support.aws import aws_failing, make_tenant
from tests.support.lambda_events import api_event, body_bytes, body_json, header
from tests.support.segmind import SAMPLE

SMALL = SAMPLE | {"width": 256, "height": 256}
SLUG = "stable-diffusion-3.5-turbo-txt2img"


def post(invoke, body, key, path=f"/v1/{SLUG}", key_id="key-acme", extra=None):
    return invoke(api_event(body, path=path, api_key_id=key_id, headers={"Idempotency-Key": key, **(extra or {})}))


def usage(invoke, key_id="key-acme"):
    return body_json(invoke(api_event(method="GET", path="/v1/usage", api_key_id=key_id)))


@pytest.mark.parametrize("extra", [{}, {"Cache-Control": "no-store"}])
def test_a_retry_with_the_same_key_costs_nothing_more(invoke, upstream, jobs_env, extra):
    make_tenant(jobs_env["registry"], budget_credits=1.0)
    upstream.succeed(times=2)
    first = post(invoke, SMALL, "order-42", extra=extra)
    again = post(invoke, SMALL, "order-42", extra=extra)
    assert first["statusCode"] == again["statusCode"] == 200
    assert body_bytes(again) == body_bytes(first)
    assert header(again, "x-idempotent-replay") == "true" and header(first, "x-idempotent-replay") is None
    assert len(upstream.calls()) == 1
    assert usage(invoke)["images_generated"] == 1 and usage(invoke)["credits_spent"] == pytest.approx(0.004)


def test_random_seed_replays_the_same_image(invoke, upstream, jobs_env):
    make_tenant(jobs_env["registry"])
    upstream.succeed(seed_header=1234, times=2)
    first = post(invoke, SMALL | {"seed": -1}, "k-random")
    again = post(invoke, SMALL | {"seed": -1}, "k-random")
    assert header(again, "x-seed-value") == header(first, "x-seed-value") == "1234"
    assert body_bytes(again) == body_bytes(first)
    assert len(upstream.calls()) == 1


def test_same_key_different_body_is_422(invoke, upstream, jobs_env):
    make_tenant(jobs_env["registry"])
    upstream.succeed(times=2)
    post(invoke, SMALL, "k-1")
    refused = post(invoke, SMALL | {"seed": 7}, "k-1")
    assert refused["statusCode"] == 422
    assert "Idempotency-Key" in body_json(refused)["error"]
    assert len(upstream.calls()) == 1


def test_keys_are_per_tenant_and_per_route(invoke, upstream, jobs_env):
    make_tenant(jobs_env["registry"], name="acme", key_id="key-acme")
    make_tenant(jobs_env["registry"], name="globex", key_id="key-globex")
    upstream.succeed(times=3)
    post(invoke, SMALL, "shared-key", key_id="key-acme")
    other = post(invoke, SMALL, "shared-key", key_id="key-globex")
    assert header(other, "x-idempotent-replay") is None  # globex's own request
    v2 = post(invoke, SMALL, "shared-key", path=f"/v2/{SLUG}")
    assert v2["statusCode"] == 200 and body_json(v2)["status"] in ("QUEUED", "COMPLETED")


def test_a_key_may_hold_spaces_inside_it_as_its_rule_says(invoke, upstream, jobs_env):
    make_tenant(jobs_env["registry"])
    upstream.succeed()
    key = "order 1234 / attempt 1"
    first = post(invoke, SMALL, key)
    again = post(invoke, SMALL, key)
    assert first["statusCode"] == again["statusCode"] == 200 and header(again, "x-idempotent-replay") == "true"
    assert len(upstream.calls()) == 1


def test_v2_submit_retry_returns_the_same_job(invoke, upstream, jobs_env):
    make_tenant(jobs_env["registry"], budget_images=5)
    submitted = post(invoke, SMALL, "job-1", path=f"/v2/{SLUG}")
    replayed = post(invoke, SMALL, "job-1", path=f"/v2/{SLUG}")
    first, again = body_json(submitted), body_json(replayed)
    assert again["request_id"] == first["request_id"]
    assert header(submitted, "x-idempotent-replay") is None and header(replayed, "x-idempotent-replay") == "true"
    assert usage(invoke)["remaining"]["images"] == 4  # reserved once
    messages = jobs_env["sqs"].receive_message(QueueUrl=jobs_env["queue"], MaxNumberOfMessages=10).get("Messages", [])
    assert len(messages) == 1


def test_failed_first_attempt_is_not_remembered(invoke, upstream, jobs_env):
    make_tenant(jobs_env["registry"])
    for _ in range(3):
        upstream.fail(500)
    upstream.succeed()
    assert post(invoke, SMALL, "k-retry")["statusCode"] == 502
    retried = post(invoke, SMALL, "k-retry")
    assert retried["statusCode"] == 200 and header(retried, "x-idempotent-replay") is None


@pytest.mark.parametrize("bad", ["", " leading", "trailing ", "tab\there", "naïve", "x" * 256])
def test_malformed_keys_are_400(invoke, upstream, jobs_env, bad):
    make_tenant(jobs_env["registry"])
    refused = post(invoke, SMALL, bad)
    assert refused["statusCode"] == 400 and "Idempotency-Key" in body_json(refused)["error"]
    assert upstream.calls() == []


@pytest.fixture
def storage_down(monkeypatch):
    """S3 writes fail while `down` is true."""
    state = {"down": True}
    aws_failing(monkeypatch, "PutObject", lambda params: state["down"])
    return state


def test_images_that_could_not_be_kept_are_still_delivered_and_never_paid_twice(
    invoke, upstream, jobs_env, storage_down
):
    make_tenant(jobs_env["registry"])
    upstream.succeed(times=2)
    first = post(invoke, SMALL, "k-unkept")
    assert first["statusCode"] == 200 and body_bytes(first)[:2] == b"\xff\xd8"  # the paid image, inline
    storage_down["down"] = False
    again = post(invoke, SMALL, "k-unkept")
    assert again["statusCode"] == 410 and "could not be kept" in body_json(again)["error"]
    assert len(upstream.calls()) == 1
    assert usage(invoke)["images_generated"] == 1


def test_an_undeliverable_first_attempt_is_refunded_and_not_remembered(
    invoke, upstream, jobs_env, storage_down, monkeypatch
):
    from segmind_proxy.settings import get_settings

    make_tenant(jobs_env["registry"])
    monkeypatch.setenv("INLINE_RESPONSE_MAX_BYTES", "1000")  # must go by URL, which needs S3
    get_settings.cache_clear()
    upstream.succeed(times=2)
    failed = post(invoke, SMALL, "k-refund")
    assert failed["statusCode"] == 503 and "nothing was charged" in body_json(failed)["error"]
    assert usage(invoke)["images_generated"] == 0
    storage_down["down"] = False
    retried = post(invoke, SMALL, "k-refund")
    assert retried["statusCode"] == 200 and header(retried, "x-idempotent-replay") is None
    assert header(retried, "x-response-mode") == "url"
    spent = usage(invoke)
    assert (spent["images_generated"], spent["failed_generations"]) == (1, 1)
    assert len(upstream.calls()) == 2


def _idempotency_record(params):
    """A call on an Idempotency-Key's record (Powertools' low-level client: typed attribute values)."""
    pk = (params.get("Key") or params.get("Item") or {}).get("pk")
    return isinstance(pk, dict) and str(pk.get("S", "")).startswith("IDEMPOTENCY")


def test_a_paid_image_is_delivered_even_when_its_key_cannot_be_recorded(invoke, upstream, jobs_env, monkeypatch):
    make_tenant(jobs_env["registry"])
    upstream.succeed()
    aws_failing(monkeypatch, "UpdateItem", _idempotency_record)  # Powertools' save of the outcome
    first = post(invoke, SMALL, "k-unrecorded")
    assert first["statusCode"] == 200 and body_bytes(first)[:2] == b"\xff\xd8"
    assert len(upstream.calls()) == 1 and usage(invoke)["images_generated"] == 1


def test_a_key_that_cannot_be_checked_is_503_before_any_work(invoke, upstream, jobs_env, monkeypatch):
    make_tenant(jobs_env["registry"])
    upstream.succeed()
    aws_failing(monkeypatch, "PutItem", _idempotency_record)  # Powertools' first write of the key
    refused = post(invoke, SMALL, "k-unchecked")
    assert refused["statusCode"] == 503 and "retry" in body_json(refused)["error"]
    assert upstream.calls() == [] and usage(invoke)["images_generated"] == 0


def test_a_failed_request_is_answered_with_its_own_failure_when_its_key_cannot_be_cleared(
    invoke, upstream, jobs_env, monkeypatch
):
    make_tenant(jobs_env["registry"])
    for _ in range(3):
        upstream.fail(500)
    aws_failing(monkeypatch, "DeleteItem", _idempotency_record)  # Powertools clears a failed attempt's record
    failed = post(invoke, SMALL, "k-uncleared")
    assert failed["statusCode"] == 502 and "Segmind" in body_json(failed)["error"]
    assert usage(invoke)["images_generated"] == 0
