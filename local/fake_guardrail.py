"""A fake Amazon Bedrock Guardrails for the local stack and tests: bedrock-runtime's ApplyGuardrail
(`POST /guardrail/{id}/version/{version}/apply`), answered in Bedrock's own JSON so botocore's real client parses it,
because moto has no ApplyGuardrail. Point the gateway at it with `AWS_ENDPOINT_URL_BEDROCK_RUNTIME=http://host:port`.
Never used in the production path.

It intervenes on a text holding one of its blocked words (a word filter: `wordPolicy.customWords`) or one of its
filtered words (a content filter of that category: `contentPolicy.filters`), knows the guardrails it is configured
with (others answer 404 ResourceNotFoundException), and has `/_fake/*` controls for tests: `config` (POST JSON:
`down` makes every apply answer 503 ServiceUnavailableException, `error` one of Bedrock's error codes for every apply,
`latency_ms`, `blocked` [words], `filtered` {category: [words]}, `guardrails` {id: [versions]}), `stats` and `reset`."""

from __future__ import annotations

import json
import math
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from werkzeug.wrappers import Request, Response

DEFAULT_GUARDRAILS = {"localguardrail": ["DRAFT", "1"]}  # an id as Bedrock makes them: lower-case letters and digits
DEFAULT_BLOCKED = ("forbidden-example", "blocked-by-guardrail")
DEFAULT_FILTERED = {"VIOLENCE": ["filtered-example"]}
BLOCKED_MESSAGE = "Sorry, the model cannot answer this question."  # Bedrock's default blocked message
CHARACTERS_PER_UNIT = 1000  # Bedrock bills a text unit per 1,000 characters

# Bedrock's errors for ApplyGuardrail (botocore's service model: the status each error code comes with).
ERRORS = {
    "AccessDeniedException": 403,
    "ResourceNotFoundException": 404,
    "ThrottlingException": 429,
    "InternalServerException": 500,
    "ServiceUnavailableException": 503,
    "ValidationException": 400,
    "ServiceQuotaExceededException": 400,
}
# Greedy on the id: an ARN's `/` arrives decoded in the path.
APPLY_PATH = re.compile(r"^/guardrail/(?P<id>.+)/version/(?P<version>[^/]+)/apply$")


@dataclass
class GuardrailState:
    guardrails: dict[str, list[str]] = field(
        default_factory=lambda: {k: list(v) for k, v in DEFAULT_GUARDRAILS.items()}
    )
    blocked: list[str] = field(default_factory=lambda: list(DEFAULT_BLOCKED))
    filtered: dict[str, list[str]] = field(default_factory=lambda: {k: list(v) for k, v in DEFAULT_FILTERED.items()})
    down: bool = False
    error: str | None = None
    latency_ms: float = 0.0
    calls: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def aws_error(code: str, message: str, status: int | None = None) -> Response:
    """An error as AWS's REST-JSON protocol sends it: the code in `x-amzn-errortype`, the message in the body."""
    headers = {"x-amzn-errortype": f"{code}:http://internal.amazon.com/coral/com.amazon.bedrock/"}
    headers["x-amzn-requestid"] = str(uuid.uuid4())
    body = json.dumps({"message": message})
    return Response(body, status=status or ERRORS.get(code, 400), content_type="application/json", headers=headers)


def _json(body: object, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json")


class FakeGuardrail:
    """WSGI app answering ApplyGuardrail as Bedrock does, plus `/_fake/*` controls."""

    def __init__(
        self,
        *,
        blocked: tuple[str, ...] = DEFAULT_BLOCKED,
        guardrails: dict[str, list[str]] | None = None,
        latency_ms: float = 0.0,
    ) -> None:
        self.state = GuardrailState(blocked=list(blocked), latency_ms=latency_ms)
        if guardrails is not None:
            self.state.guardrails = {key: list(versions) for key, versions in guardrails.items()}

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        return self.dispatch(Request(environ))(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        if request.path.startswith("/_fake/"):
            return self._control(request)
        route = APPLY_PATH.match(request.path)
        if route is None or request.method != "POST":
            return aws_error("UnknownOperationException", "No such operation", 404)
        return self._apply(route["id"], route["version"], request)

    def _control(self, request: Request) -> Response:
        state = self.state
        with state.lock:
            if request.path == "/_fake/stats":
                return _json({"calls": len(state.calls), "requests": state.calls[-50:]})
            if request.path == "/_fake/reset" and request.method == "POST":
                fresh = GuardrailState()
                state.calls.clear()
                state.guardrails, state.blocked, state.filtered = fresh.guardrails, fresh.blocked, fresh.filtered
                state.down, state.error, state.latency_ms = False, None, 0.0
                return _json({})
            if request.path == "/_fake/config" and request.method == "POST":
                return self._configure(request.get_json(force=True) or {})
        return _json({"error": "Not found"}, 404)

    def _configure(self, config: dict[str, Any]) -> Response:
        state = self.state
        if config.get("error") not in (None, *ERRORS):
            return _json({"error": f"error must be one of {sorted(ERRORS)} or null"}, 400)
        state.down = bool(config.get("down", state.down))
        state.error = config.get("error", state.error)
        state.latency_ms = float(config.get("latency_ms", state.latency_ms))
        state.blocked = [str(word) for word in config.get("blocked", state.blocked)]
        state.filtered = {str(k): [str(w) for w in v] for k, v in config.get("filtered", state.filtered).items()}
        state.guardrails = {
            str(k): [str(v) for v in vs] for k, vs in config.get("guardrails", state.guardrails).items()
        }
        return _json({})

    def _apply(self, guardrail_id: str, version: str, request: Request) -> Response:
        state = self.state
        try:
            body = json.loads(request.get_data() or b"{}")
            texts = [block["text"]["text"] for block in body["content"]]
            source = body["source"]
        except (ValueError, KeyError, TypeError):
            return aws_error("ValidationException", "The request body is not a valid ApplyGuardrail request")
        with state.lock:
            state.calls.append({"guardrail": guardrail_id, "version": version, "source": source, "texts": texts})
            down, error, latency = state.down, state.error, state.latency_ms
            known = version in state.guardrails.get(guardrail_id, [])
            blocked, filtered = list(state.blocked), {k: list(v) for k, v in state.filtered.items()}
        if latency:
            time.sleep(latency / 1000)
        if down:
            return aws_error("ServiceUnavailableException", "Service is temporarily unavailable")
        if error:
            return aws_error(error, f"Fake failure: {error}")
        if source not in ("INPUT", "OUTPUT") or not texts:
            return aws_error("ValidationException", "source must be INPUT or OUTPUT, with content")
        if not known:
            return aws_error("ResourceNotFoundException", f"Guardrail {guardrail_id} version {version} not found")
        return _json(assessed(texts, blocked, filtered))


def _found(word: str, texts: list[str]) -> bool:
    return any(word.casefold() in text.casefold() for text in texts)


def assessed(texts: list[str], blocked: list[str], filtered: dict[str, list[str]]) -> dict[str, Any]:
    """ApplyGuardrail's answer for these texts, shaped as Bedrock's (every field botocore's model marks required)."""
    words = [{"match": word, "action": "BLOCKED", "detected": True} for word in blocked if _found(word, texts)]
    filters = [
        {"type": category, "confidence": "HIGH", "filterStrength": "HIGH", "action": "BLOCKED", "detected": True}
        for category, triggers in filtered.items()
        if any(_found(word, texts) for word in triggers)
    ]
    characters = sum(len(text) for text in texts)
    units = max(1, math.ceil(characters / CHARACTERS_PER_UNIT))
    assessment: dict[str, Any] = {
        "invocationMetrics": {
            "guardrailProcessingLatency": 12,
            "usage": usage(units),
            "guardrailCoverage": {"textCharacters": {"guarded": characters, "total": characters}},
        }
    }
    if words:
        assessment["wordPolicy"] = {"customWords": words, "managedWordLists": []}
    if filters:
        assessment["contentPolicy"] = {"filters": filters}
    intervened = bool(words or filters)
    answer: dict[str, Any] = {
        "usage": usage(units),
        "action": "GUARDRAIL_INTERVENED" if intervened else "NONE",
        "outputs": [{"text": BLOCKED_MESSAGE}] if intervened else [],
        "assessments": [assessment],
        "guardrailCoverage": {"textCharacters": {"guarded": characters, "total": characters}},
    }
    if intervened:
        answer["actionReason"] = "Guardrail blocked."
    return answer


def usage(units: int) -> dict[str, int]:
    """The text units each policy processed (word filters and PII detection are not billed per unit: free units)."""
    return {
        "topicPolicyUnits": units,
        "contentPolicyUnits": units,
        "wordPolicyUnits": units,
        "sensitiveInformationPolicyUnits": 0,
        "sensitiveInformationPolicyFreeUnits": 0,
        "contextualGroundingPolicyUnits": 0,
    }
