"""The domain's errors in OpenAI's protocol: an HTTP status, OpenAI's `{"error": {"message", "type", "param",
"code"}}` body naming the bad parameter, and the headers that go with them. Statuses are those of Segmind's map
(upstream failures included), except a budget refusal: 429 `insufficient_quota`, as OpenAI answers it. Which
paths speak OpenAI's protocol is decided here too (`speaks_openai`)."""

from __future__ import annotations

from typing import Any

from segmind_proxy.api import segmind_errors
from segmind_proxy.api.proxy_events import shown_path
from segmind_proxy.api.segmind_errors import ErrorAnswer
from segmind_proxy.domain.cache_policy import CacheStatus
from segmind_proxy.domain.errors import (
    AccessRefused,
    BudgetExceeded,
    CoalesceTimeout,
    DomainError,
    IdempotencyInProgress,
    IdempotencyKeyReused,
    MethodNotAllowed,
    ModelNotAllowed,
    NotCached,
    NotFound,
    PromptRefused,
    RequestInvalid,
    Unavailable,
    UnknownModel,
    UpstreamFailure,
)

# OpenAI's first path segments under /v1/ (its API reference): their unknown routes answer in OpenAI's shape.
OPENAI_RESOURCES = frozenset(
    {
        "assistants",
        "audio",
        "batches",
        "chat",
        "completions",
        "containers",
        "conversations",
        "edits",
        "embeddings",
        "engines",
        "evals",
        "files",
        "fine-tunes",
        "fine_tuning",
        "images",
        "models",
        "moderations",
        "organization",
        "realtime",
        "responses",
        "threads",
        "uploads",
        "vector_stores",
        "videos",
    }
)

# Tells the openai SDKs not to retry (they otherwise retry 408, 409, 429 and 5xx).
NO_RETRY = {"x-should-retry": "false"}


def speaks_openai(path: str | None) -> bool:
    """Whether a path is one of OpenAI's (`/v1/images/...`, `/v1/models`, `/v1/chat/...`, ...)."""
    parts = (path or "").strip("/").split("/")
    return len(parts) >= 2 and parts[0] == "v1" and parts[1] in OPENAI_RESOURCES


def error_body(message: str, kind: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def not_found(method: str, path: str) -> ErrorAnswer:
    message = (
        f"Unknown request URL: {method} {shown_path(path)}. This gateway serves POST /v1/images/generations and GET "
        "/v1/models."
    )
    return ErrorAnswer(404, error_body(message, "invalid_request_error", None, "unknown_url"))


def internal_error() -> ErrorAnswer:
    return ErrorAnswer(500, error_body("Internal gateway error", "server_error"))


def answer(error: DomainError) -> ErrorAnswer:
    # OpenAI answers a model you may not use as one that does not exist (404 model_not_found).
    status = 429 if isinstance(error, BudgetExceeded) else 404 if isinstance(error, ModelNotAllowed) else None
    status = status or segmind_errors.status(error)
    kind, param, code = _kind(error, status)
    return ErrorAnswer(status, error_body(error.message, kind, param, code), _headers(error))


def _kind(error: DomainError, status: int) -> tuple[str, str | None, str | None]:
    """OpenAI's `type`, `param` and `code` for an error."""
    if isinstance(error, RequestInvalid):
        return "invalid_request_error", param_of(error), None
    if isinstance(error, BudgetExceeded):
        return "insufficient_quota", None, "insufficient_quota"
    if isinstance(error, PromptRefused):  # as OpenAI's own safety system answers (its SDK raises BadRequestError)
        return "image_generation_user_error", None, "moderation_blocked"
    if isinstance(error, AccessRefused):
        return "permission_error", None, "access_refused"
    if isinstance(error, (UnknownModel, ModelNotAllowed)):
        return "invalid_request_error", "model", "model_not_found"
    if isinstance(error, NotFound):
        return "invalid_request_error", None, "not_found"
    if isinstance(error, MethodNotAllowed):
        return "invalid_request_error", None, "method_not_allowed"
    if isinstance(error, IdempotencyInProgress):
        return "invalid_request_error", None, "idempotency_key_in_progress"
    if isinstance(error, IdempotencyKeyReused):
        return "invalid_request_error", None, "idempotency_key_reused"
    if isinstance(error, NotCached):
        return "invalid_request_error", None, "not_cached"
    if isinstance(error, UpstreamFailure):
        if status == 400:
            return "invalid_request_error", None, "upstream_rejected"
        if status == 429:
            return "rate_limit_error", None, "rate_limit_exceeded"
        return "server_error", None, f"upstream_{error.kind.value}"
    if isinstance(error, (Unavailable, CoalesceTimeout)):
        return "server_error", None, error.kind
    return ("server_error" if status >= 500 else "invalid_request_error"), None, error.kind


def param_of(error: RequestInvalid) -> str | None:
    """The first bad field, as the client named it (the OpenAI front door names its own parameters)."""
    if not error.details:
        return None
    return str(error.details[0].get("field", "")).split(".")[0] or None


def _headers(error: DomainError) -> dict[str, str]:
    headers = dict(segmind_errors.headers(error))
    if isinstance(error, (BudgetExceeded, NotCached)) or (isinstance(error, UpstreamFailure) and not error.retryable):
        headers |= NO_RETRY  # the same request will not succeed by retrying it now
    if isinstance(error, NotCached):
        headers["x-cache"] = CacheStatus.MISS.value
    return headers
