"""The Bedrock Guardrails screen: against the fake (local/fake_guardrail.py) served on a real port and called through
a real botocore client, so the fake's answers are known to parse as Bedrock's do; and against botocore's Stubber,
which checks the adapter's request against the service model and parses a documented GUARDRAIL_INTERVENED answer."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from werkzeug.serving import make_server

from local.fake_guardrail import FakeGuardrail
from segmind_proxy.adapters.bedrock_guardrail import GuardrailScreen, bedrock_runtime, failure_of, reasons_of
from segmind_proxy.domain.errors import Dependency, Outage
from segmind_proxy.domain.screening import ALLOWED, ScreeningPolicy, ScreenMode, Verdict

POLICY = ScreeningPolicy(ScreenMode.GUARDRAIL, guardrail_id="localguardrail", guardrail_version="1")
CLEAN = {"prompt": "a red fox in the snow", "negative_prompt": "blurry"}


@pytest.fixture
def fake() -> FakeGuardrail:
    return FakeGuardrail()


@pytest.fixture
def endpoint(fake: FakeGuardrail) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, fake, threaded=True)
    # A short poll: shutting down waits for the serving loop's next look, 0.5 s by default.
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def screen(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[GuardrailScreen]:
    """The adapter as a container builds it: its own client, whose endpoint comes from the AWS configuration."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", endpoint)
    bedrock_runtime.cache_clear()
    yield GuardrailScreen()
    bedrock_runtime.cache_clear()


# -- against the fake, through botocore --------------------------------------------------------------------------------
def test_the_endpoint_comes_from_the_aws_configuration(screen, endpoint):
    assert bedrock_runtime().meta.endpoint_url == endpoint


def test_clean_texts_are_allowed_in_one_call(screen, fake):
    assert screen.screen(CLEAN, POLICY, timeout=2.0) == ALLOWED
    assert fake.state.calls == [
        {"guardrail": "localguardrail", "version": "1", "source": "INPUT", "texts": list(CLEAN.values())}
    ]


def test_a_blocked_prompt_is_refused_naming_it(screen, fake):
    verdict = screen.screen({"prompt": "a forbidden-example", "negative_prompt": "blurry"}, POLICY, timeout=2.0)
    assert verdict == Verdict(False, "prompt", ("wordPolicy",))
    assert len(fake.state.calls) == 2  # both texts, then the prompt alone: it was the one refused


def test_a_blocked_negative_prompt_is_refused_naming_it(screen, fake):
    verdict = screen.screen({"prompt": "a fox", "negative_prompt": "blocked-by-guardrail"}, POLICY, timeout=2.0)
    assert verdict == Verdict(False, "negative_prompt", ("wordPolicy",))
    assert [call["texts"] for call in fake.state.calls] == [["a fox", "blocked-by-guardrail"], ["a fox"]]


def test_a_content_filter_is_named_by_its_category_never_by_what_matched(screen):
    verdict = screen.screen({"prompt": "filtered-example and forbidden-example"}, POLICY, timeout=2.0)
    assert verdict == Verdict(False, "prompt", ("contentPolicy:VIOLENCE", "wordPolicy"))
    assert "example" not in repr(verdict)


def test_a_draft_guardrail_and_an_arn_are_asked_for_as_named(screen, fake):
    arn = "arn:aws:bedrock:us-east-1:123456789012:guardrail/abc123"
    fake.state.guardrails[arn] = ["DRAFT"]
    policy = ScreeningPolicy(ScreenMode.GUARDRAIL, guardrail_id=arn, guardrail_version="DRAFT")
    assert screen.screen({"prompt": "a fox"}, policy, timeout=2.0) == ALLOWED
    assert fake.state.calls[-1]["guardrail"] == arn


def test_an_unknown_guardrail_is_an_outage_saying_so(screen):
    policy = ScreeningPolicy(ScreenMode.GUARDRAIL, guardrail_id="nosuchguardrail", guardrail_version="1")
    with pytest.raises(Outage) as failed:
        screen.screen(CLEAN, policy, timeout=2.0)
    assert failed.value.dependency is Dependency.SCREEN
    cause = failed.value.__cause__
    assert isinstance(cause, ClientError) and cause.response["Error"]["Code"] == "ResourceNotFoundException"
    assert failure_of(cause) == "guardrail_not_found"


def test_a_guardrail_down_is_an_outage(screen, fake):
    fake.state.down = True
    with pytest.raises(Outage) as failed:
        screen.screen(CLEAN, POLICY, timeout=3.0)
    assert failure_of(failed.value.__cause__) == "server_error"
    assert len(fake.state.calls) == 2  # tried again once


@pytest.mark.parametrize(
    ("error", "failure"),
    [
        ("ThrottlingException", "throttled"),
        ("AccessDeniedException", "access_denied"),
        ("InternalServerException", "server_error"),
        ("ValidationException", "invalid_request"),
    ],
)
def test_each_refusal_of_the_service_is_an_outage_telling_what_happened(screen, fake, error, failure):
    fake.state.error = error
    with pytest.raises(Outage) as failed:
        screen.screen(CLEAN, POLICY, timeout=3.0)
    assert failure_of(failed.value.__cause__) == failure


def test_a_guardrail_slower_than_the_timeout_is_an_outage_at_the_timeout(screen, fake):
    screen.screen(CLEAN, POLICY, timeout=2.0)  # the client built and connected: the wait below is the call's own
    fake.state.latency_ms = 1500
    started = time.monotonic()
    with pytest.raises(Outage) as failed:
        screen.screen(CLEAN, POLICY, timeout=0.3)
    assert 0.3 <= time.monotonic() - started < 0.6
    assert isinstance(failed.value.__cause__, TimeoutError)


def test_an_unreachable_endpoint_is_an_outage(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "http://127.0.0.1:9")  # discard: nothing listens
    bedrock_runtime.cache_clear()
    try:
        with pytest.raises(Outage) as failed:
            GuardrailScreen().screen(CLEAN, POLICY, timeout=3.0)
    finally:
        bedrock_runtime.cache_clear()
    assert failure_of(failed.value.__cause__) == "connection"


def test_a_refusal_whose_field_cannot_be_told_in_time_names_the_prompt(endpoint, fake):
    # The clock reads the start and the first call's time left, then has gone past the deadline: the prompt alone
    # cannot be asked in time. Refused all the same, naming the first text.
    readings = iter([100.0, 100.0])
    client = boto3.client("bedrock-runtime", endpoint_url=endpoint)
    screen = GuardrailScreen(lambda: client, clock=lambda: next(readings, 10_000.0))
    verdict = screen.screen({"prompt": "a fox", "negative_prompt": "forbidden-example"}, POLICY, timeout=2.0)
    assert verdict == Verdict(False, "prompt", ("wordPolicy",))
    assert len(fake.state.calls) == 1


# -- against botocore's Stubber: the request as the service model wants it, a documented answer parsed ---------------
# An ApplyGuardrail answer as the Bedrock user guide shows one (a denied topic, a content filter, a word filter, a
# managed word list and an anonymised PII entity), with the `match` fields that must never reach a verdict.
INTERVENED = {
    "usage": {
        "topicPolicyUnits": 1,
        "contentPolicyUnits": 1,
        "wordPolicyUnits": 1,
        "sensitiveInformationPolicyUnits": 1,
        "sensitiveInformationPolicyFreeUnits": 0,
        "contextualGroundingPolicyUnits": 0,
    },
    "action": "GUARDRAIL_INTERVENED",
    "actionReason": "Guardrail blocked.",
    "outputs": [{"text": "Sorry, the model cannot answer this question."}],
    "assessments": [
        {
            "topicPolicy": {"topics": [{"name": "Weapons", "type": "DENY", "action": "BLOCKED", "detected": True}]},
            "contentPolicy": {
                "filters": [
                    {"type": "SEXUAL", "confidence": "HIGH", "filterStrength": "HIGH", "action": "BLOCKED"},
                    {"type": "INSULTS", "confidence": "LOW", "filterStrength": "HIGH", "action": "NONE"},
                ]
            },
            "wordPolicy": {
                "customWords": [{"match": "secretword", "action": "BLOCKED", "detected": True}],
                "managedWordLists": [{"match": "damnword", "type": "PROFANITY", "action": "BLOCKED"}],
            },
            "sensitiveInformationPolicy": {
                "piiEntities": [{"match": "jane@example.com", "type": "EMAIL", "action": "ANONYMIZED"}],
                "regexes": [],
            },
            "invocationMetrics": {
                "guardrailProcessingLatency": 322,
                "usage": {
                    "topicPolicyUnits": 1,
                    "contentPolicyUnits": 1,
                    "wordPolicyUnits": 1,
                    "sensitiveInformationPolicyUnits": 1,
                    "sensitiveInformationPolicyFreeUnits": 0,
                    "contextualGroundingPolicyUnits": 0,
                },
                "guardrailCoverage": {"textCharacters": {"guarded": 39, "total": 39}},
            },
        }
    ],
    "guardrailCoverage": {"textCharacters": {"guarded": 39, "total": 39}},
}
NONE = {**INTERVENED, "action": "NONE", "outputs": [], "assessments": [{}]}
del NONE["actionReason"]
STUB_POLICY = ScreeningPolicy(ScreenMode.GUARDRAIL, guardrail_id="abc123", guardrail_version="DRAFT")


def request_for(*texts: str) -> dict:
    return {
        "guardrailIdentifier": "abc123",
        "guardrailVersion": "DRAFT",
        "source": "INPUT",
        "content": [{"text": {"text": text}} for text in texts],
    }


@pytest.fixture
def stubbed() -> Iterator[tuple[GuardrailScreen, Stubber]]:
    client = boto3.client("bedrock-runtime", region_name="us-east-1")
    with Stubber(client) as stubber:
        yield GuardrailScreen(lambda: client), stubber
        stubber.assert_no_pending_responses()


def test_the_request_is_what_the_service_model_describes(stubbed):
    screen, stubber = stubbed
    stubber.add_response("apply_guardrail", NONE, request_for("a fox", "blurry"))
    assert screen.screen({"prompt": "a fox", "negative_prompt": "blurry"}, STUB_POLICY, timeout=2.0) == ALLOWED


def test_a_documented_intervention_parses_into_reasons_without_what_matched(stubbed):
    screen, stubber = stubbed
    stubber.add_response("apply_guardrail", INTERVENED, request_for("a fox with a secretword"))
    verdict = screen.screen({"prompt": "a fox with a secretword"}, STUB_POLICY, timeout=2.0)
    assert verdict == Verdict(
        False,
        "prompt",
        (
            "contentPolicy:SEXUAL",
            "wordPolicy",
            "wordPolicy:PROFANITY",
            "topicPolicy:Weapons",
            "sensitiveInformationPolicy:EMAIL",
        ),
    )
    assert not {"secretword", "damnword", "jane@example.com"} & set(" ".join(verdict.reasons).split(":"))


def test_a_refusal_of_several_texts_asks_each_but_the_last_alone(stubbed):
    screen, stubber = stubbed
    stubber.add_response("apply_guardrail", INTERVENED, request_for("a fox", "bad words"))
    stubber.add_response("apply_guardrail", NONE, request_for("a fox"))
    verdict = screen.screen({"prompt": "a fox", "negative_prompt": "bad words"}, STUB_POLICY, timeout=2.0)
    assert verdict.field == "negative_prompt"


def test_empty_texts_are_not_sent(stubbed):
    screen, stubber = stubbed
    stubber.add_response("apply_guardrail", NONE, request_for("a fox"))
    assert screen.screen({"prompt": "a fox", "negative_prompt": ""}, STUB_POLICY, timeout=2.0) == ALLOWED
    assert screen.screen({}, STUB_POLICY, timeout=2.0) == ALLOWED  # nothing to ask


def test_no_time_left_is_an_outage_without_a_call(stubbed):
    screen, _ = stubbed
    with pytest.raises(Outage):
        screen.screen({"prompt": "a fox"}, STUB_POLICY, timeout=0.0)


def test_an_intervention_without_a_known_assessment_still_gives_a_reason():
    assert reasons_of({"action": "GUARDRAIL_INTERVENED", "assessments": [{}]}) == ("guardrail",)
    assert reasons_of({"action": "GUARDRAIL_INTERVENED"}) == ("guardrail",)
