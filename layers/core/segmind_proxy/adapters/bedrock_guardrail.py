"""Amazon Bedrock Guardrails as a prompt screen (the `guardrail` mode of a tenant's policy): bedrock-runtime's
ApplyGuardrail, with the guardrail id and version the policy names, on the prompt and negative prompt as INPUT.

The endpoint is the ordinary AWS configuration's: `AWS_ENDPOINT_URL_BEDROCK_RUNTIME` (or `AWS_ENDPOINT_URL`) points it
at local/fake_guardrail.py in the local stack, as moto has no ApplyGuardrail."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as WaitTimedOut
from typing import Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from segmind_proxy.adapters.aws_clients import bedrock_runtime
from segmind_proxy.domain.errors import Dependency, Outage
from segmind_proxy.domain.screening import ALLOWED, ScreeningPolicy, Verdict
from segmind_proxy.observability import logger

INTERVENED = "GUARDRAIL_INTERVENED"

# botocore's timeouts bound each connection and socket read, not a call with its retry and backoff: the call runs
# here while the caller waits for it no longer than its timeout. An abandoned call ends at its own read timeout.
_calls = ThreadPoolExecutor(max_workers=4, thread_name_prefix="guardrail")

# How an AWS error code reads in the log line of a screen that could not answer.
_FAILURES = {
    "ThrottlingException": "throttled",
    "ServiceQuotaExceededException": "quota_exceeded",
    "AccessDeniedException": "access_denied",  # the function's role may not call bedrock:ApplyGuardrail on it
    "ResourceNotFoundException": "guardrail_not_found",  # a wrong guardrail id or version in the tenant's policy
    "ValidationException": "invalid_request",
    "InternalServerException": "server_error",
    "ServiceUnavailableException": "server_error",
}


class GuardrailScreen:
    """Screens texts with ApplyGuardrail. Raises Outage(Dependency.SCREEN) where Bedrock cannot answer within the
    timeout (down, slow, throttled, or refusing the guardrail named: its __cause__ and a log line say which)."""

    name = "Bedrock Guardrails"

    def __init__(
        self, client_factory: Callable[[], Any] = bedrock_runtime, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._client = client_factory
        self._clock = clock

    def screen(self, texts: Mapping[str, str], policy: ScreeningPolicy, *, timeout: float) -> Verdict:
        deadline = self._clock() + timeout
        fields = [field for field, text in texts.items() if text]
        if not fields:
            return ALLOWED
        answer = self._apply(policy, [texts[field] for field in fields], deadline)
        if answer.get("action") != INTERVENED:
            return ALLOWED
        return Verdict(False, self._refused_field(policy, texts, fields, deadline), reasons_of(answer))

    def _refused_field(
        self, policy: ScreeningPolicy, texts: Mapping[str, str], fields: list[str], deadline: float
    ) -> str:
        """Which text the guardrail refused. Its assessments are the call's, not a content block's: one call screens
        every text (a clean request, the usual case, costs one call), and only a refusal of several is asked again
        for each text but the last, alone, in the time left."""
        for field in fields[:-1]:
            try:
                alone = self._apply(policy, [texts[field]], deadline)
            except Outage:
                return field  # refused all the same; which text could not be told in time: the first one asked
            if alone.get("action") == INTERVENED:
                return field
        return fields[-1]

    def _apply(self, policy: ScreeningPolicy, texts: Sequence[str], deadline: float) -> dict[str, Any]:
        remaining = deadline - self._clock()
        if remaining <= 0:
            late = TimeoutError("no time left to ask the guardrail")
            raise self._outage("timeout", policy, late) from late
        call = _calls.submit(self._call, policy, texts)
        try:
            return call.result(timeout=remaining)
        except WaitTimedOut:
            late = TimeoutError(f"no answer within {remaining:.2f} s")
            raise self._outage("timeout", policy, late) from late
        except (BotoCoreError, ClientError) as exc:
            raise self._outage(failure_of(exc), policy, exc) from exc

    def _call(self, policy: ScreeningPolicy, texts: Sequence[str]) -> dict[str, Any]:
        # No qualifiers: they mark the parts of a contextual grounding check (grounding_source, query, guard_content);
        # unqualified text is assessed by every other policy of the guardrail, which is what a prompt needs.
        return self._client().apply_guardrail(
            guardrailIdentifier=policy.guardrail_id,
            guardrailVersion=policy.guardrail_version,
            source="INPUT",
            content=[{"text": {"text": text}} for text in texts],
        )

    def _outage(self, failure: str, policy: ScreeningPolicy, cause: BaseException) -> Outage:
        logger.warning(
            "Guardrail did not answer",
            extra={
                "screen": self.name,
                "failure": failure,
                "error": f"{type(cause).__name__}: {cause}",
                "guardrail_id": policy.guardrail_id,
                "guardrail_version": policy.guardrail_version,
            },
        )
        return Outage(Dependency.SCREEN)


def failure_of(exc: BotoCoreError | ClientError) -> str:
    """What went wrong, in a word for the log: the AWS error code's meaning, or the transport fault."""
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return _FAILURES.get(code, "server_error" if status >= 500 else f"refused:{code or status}")
    if isinstance(exc, ReadTimeoutError | ConnectTimeoutError):
        return "timeout"
    if isinstance(exc, EndpointConnectionError):
        return "connection"
    return f"sdk:{type(exc).__name__}"


def reasons_of(answer: Mapping[str, Any]) -> tuple[str, ...]:
    """What kinds of rule the guardrail applied ("contentPolicy:SEXUAL", "wordPolicy", "topicPolicy:<topic name>"),
    from its assessments; never what matched (a custom word's or a PII entity's `match`)."""
    found: list[str] = []
    for assessment in answer.get("assessments") or []:
        found += _content_reasons(assessment) + _word_reasons(assessment) + _other_reasons(assessment)
    return tuple(dict.fromkeys(found)) or ("guardrail",)


def _applied(entries: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    # An entry with action NONE was detected but not acted on (a policy in detect mode, or outputScope FULL).
    return [entry for entry in entries or [] if entry.get("action", "NONE") != "NONE"]


def _content_reasons(assessment: Mapping[str, Any]) -> list[str]:
    filters = (assessment.get("contentPolicy") or {}).get("filters")
    return [f"contentPolicy:{entry['type']}" for entry in _applied(filters)]


def _word_reasons(assessment: Mapping[str, Any]) -> list[str]:
    words = assessment.get("wordPolicy") or {}
    custom = ["wordPolicy"] if _applied(words.get("customWords")) else []
    return custom + [f"wordPolicy:{entry['type']}" for entry in _applied(words.get("managedWordLists"))]


def _other_reasons(assessment: Mapping[str, Any]) -> list[str]:
    topics = (assessment.get("topicPolicy") or {}).get("topics")
    sensitive = assessment.get("sensitiveInformationPolicy") or {}
    grounding = (assessment.get("contextualGroundingPolicy") or {}).get("filters")
    return (
        [f"topicPolicy:{entry['name']}" for entry in _applied(topics)]
        + [f"sensitiveInformationPolicy:{entry['type']}" for entry in _applied(sensitive.get("piiEntities"))]
        + [f"sensitiveInformationPolicy:{entry.get('name', 'regex')}" for entry in _applied(sensitive.get("regexes"))]
        + [f"contextualGroundingPolicy:{entry['type']}" for entry in _applied(grounding)]
    )
