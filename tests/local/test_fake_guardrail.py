"""The fake Bedrock Guardrails answers as Bedrock does where the adapter and the local stack rely on it (that botocore
parses its answers is tested through the adapter, tests/adapters/test_guardrail.py), and its controls work."""

from __future__ import annotations

import pytest
from werkzeug.test import Client

from local.fake_guardrail import FakeGuardrail

APPLY = "/guardrail/localguardrail/version/DRAFT/apply"


@pytest.fixture
def fake():
    return FakeGuardrail()


def apply(fake, *texts, path=APPLY, source="INPUT"):
    return Client(fake).post(path, json={"source": source, "content": [{"text": {"text": t}} for t in texts]})


def configure(fake, **config):
    assert Client(fake).post("/_fake/config", json=config).status_code == 200


def test_clean_text_passes_with_every_required_field():
    answer = apply(FakeGuardrail(), "a red fox")
    assert answer.status_code == 200
    body = answer.get_json()
    assert body["action"] == "NONE" and body["outputs"] == []
    assert set(body["usage"]) >= {"topicPolicyUnits", "contentPolicyUnits", "wordPolicyUnits"}
    assert body["guardrailCoverage"] == {"textCharacters": {"guarded": 9, "total": 9}}


def test_a_blocked_word_intervenes_as_a_word_filter(fake):
    body = apply(fake, "a fox", "something Forbidden-Example here").get_json()
    assert body["action"] == "GUARDRAIL_INTERVENED"
    assert body["outputs"] == [{"text": "Sorry, the model cannot answer this question."}]
    assert body["assessments"][0]["wordPolicy"]["customWords"] == [
        {"match": "forbidden-example", "action": "BLOCKED", "detected": True}
    ]


def test_a_filtered_word_intervenes_as_a_content_filter(fake):
    configure(fake, filtered={"SEXUAL": ["nsfw-example"]})
    filters = apply(fake, "an nsfw-example").get_json()["assessments"][0]["contentPolicy"]["filters"]
    assert [(f["type"], f["action"]) for f in filters] == [("SEXUAL", "BLOCKED")]


def test_an_unknown_guardrail_or_version_is_a_404_in_awss_error_shape(fake):
    for path in ("/guardrail/other/version/1/apply", "/guardrail/localguardrail/version/7/apply"):
        answer = apply(fake, "a fox", path=path)
        assert answer.status_code == 404
        assert answer.headers["x-amzn-errortype"].split(":")[0] == "ResourceNotFoundException"
        assert "not found" in answer.get_json()["message"]


def test_an_arn_is_routed_whole(fake):
    arn = "arn:aws:bedrock:us-east-1:123456789012:guardrail/abc123"
    configure(fake, guardrails={arn: ["1"]})
    assert apply(fake, "a fox", path=f"/guardrail/{arn}/version/1/apply").status_code == 200


def test_a_malformed_request_is_a_validation_error(fake):
    answer = Client(fake).post(APPLY, json={"content": "nope"})
    assert answer.status_code == 400
    assert answer.headers["x-amzn-errortype"].startswith("ValidationException")
    assert apply(fake, "a fox", source="SIDEWAYS").status_code == 400


def test_down_answers_503_and_an_error_its_own_status(fake):
    configure(fake, down=True)
    answer = apply(fake, "a fox")
    assert answer.status_code == 503 and answer.headers["x-amzn-errortype"].startswith("ServiceUnavailableException")
    configure(fake, down=False, error="ThrottlingException")
    assert apply(fake, "a fox").status_code == 429
    assert Client(fake).post("/_fake/config", json={"error": "NoSuchError"}).status_code == 400


def test_stats_count_calls_and_reset_forgets_them_and_the_config(fake):
    configure(fake, blocked=["fox"], latency_ms=1)
    apply(fake, "a fox")
    stats = Client(fake).get("/_fake/stats").get_json()
    assert stats["calls"] == 1
    assert stats["requests"] == [
        {"guardrail": "localguardrail", "version": "DRAFT", "source": "INPUT", "texts": ["a fox"]}
    ]
    assert Client(fake).post("/_fake/reset").status_code == 200
    assert Client(fake).get("/_fake/stats").get_json()["calls"] == 0
    assert apply(fake, "a fox").get_json()["action"] == "NONE"
    assert fake.state.latency_ms == 0
