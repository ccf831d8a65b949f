"""The domain's errors in Segmind's protocol: an HTTP status, Segmind's `{"error": ...}` body (validation errors
also list each bad field in `errors`) and the headers that go with them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from segmind_proxy.api.schemas import ErrorBody
from segmind_proxy.domain.cache_policy import CacheStatus
from segmind_proxy.domain.errors import (
    AccessRefused,
    BodyTooLarge,
    BudgetExceeded,
    CoalesceTimeout,
    DomainError,
    Expired,
    FailureKind,
    IdempotencyInProgress,
    IdempotencyKeyReused,
    MethodNotAllowed,
    ModelNotAllowed,
    NotCached,
    NotFound,
    PromptRefused,
    RequestInvalid,
    Unavailable,
    UnsupportedMediaType,
    UpstreamFailure,
)

# Looked up along the error's class hierarchy: the most specific class listed decides.
STATUS: dict[type[DomainError], int] = {
    RequestInvalid: 400,
    PromptRefused: 400,
    BodyTooLarge: 413,
    UnsupportedMediaType: 415,  # Content-Type and Content-Encoding alike
    BudgetExceeded: 402,
    AccessRefused: 403,
    ModelNotAllowed: 403,
    NotFound: 404,
    MethodNotAllowed: 405,
    IdempotencyInProgress: 409,
    Expired: 410,
    IdempotencyKeyReused: 422,
    Unavailable: 503,
    NotCached: 504,  # as RFC 9111 has it for only-if-cached
    CoalesceTimeout: 504,
}

UPSTREAM_STATUS: dict[FailureKind, int] = {
    FailureKind.TIMEOUT: 504,
    FailureKind.CONNECTION: 502,
    FailureKind.AUTH: 502,  # the gateway's key: not the client's fault, nor something it can fix
    FailureKind.CREDITS: 503,
    FailureKind.RATE_LIMITED: 429,
    FailureKind.SERVER_ERROR: 502,
    FailureKind.REJECTED: 502,  # but 400 when Segmind found the request itself invalid (see `status`)
    FailureKind.INVALID_RESPONSE: 502,
    FailureKind.CONFIG: 502,
    FailureKind.SECRET: 502,
}
REJECTED_AS_INVALID = frozenset({400, 422})
RATE_LIMITED_RETRY_AFTER = 10  # seconds, when Segmind does not say when its limit resets


@dataclass(frozen=True)
class ErrorAnswer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def answer(error: DomainError) -> ErrorAnswer:
    return ErrorAnswer(status(error), body(error), headers(error))


def status(error: DomainError) -> int:
    if isinstance(error, UpstreamFailure):
        if error.kind is FailureKind.REJECTED and error.upstream_status in REJECTED_AS_INVALID:
            return 400
        return UPSTREAM_STATUS[error.kind]
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500  # a domain error this protocol does not know: a gateway fault


def body(error: DomainError) -> dict[str, Any]:
    details = error.details if isinstance(error, RequestInvalid) else None
    return ErrorBody.model_validate({"error": error.message, "errors": details}).model_dump(exclude_none=True)


def headers(error: DomainError) -> dict[str, str]:
    if isinstance(error, UpstreamFailure) and error.kind is FailureKind.RATE_LIMITED:
        wait = max(1, round(error.retry_after)) if error.retry_after else RATE_LIMITED_RETRY_AFTER
        return {"Retry-After": str(wait)}
    if isinstance(error, IdempotencyInProgress):
        return {"Retry-After": str(error.retry_after)}
    if isinstance(error, NotCached):
        return {"x-cache": CacheStatus.MISS.value}
    if isinstance(error, MethodNotAllowed):
        return {"Allow": ", ".join(error.allowed)}
    return {}
