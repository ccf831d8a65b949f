"""The domain's errors carry no HTTP status: Segmind's protocol gives each its status, body and headers."""

import inspect

import pytest

from segmind_proxy.api import segmind_errors
from segmind_proxy.domain import errors
from segmind_proxy.domain.errors import (
    AccessRefused,
    BodyTooLarge,
    BudgetExceeded,
    CoalesceTimeout,
    Dependency,
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
    UnknownModel,
    UnsupportedEncoding,
    UnsupportedMediaType,
    UpstreamFailure,
)

ANSWERS = [
    (RequestInvalid("bad"), 400, {}),
    (PromptRefused("refused by the content policy", field="prompt"), 400, {}),
    (BodyTooLarge("too big"), 413, {}),
    (UnsupportedMediaType("not JSON"), 415, {}),
    (UnsupportedEncoding("gzip"), 415, {}),
    (BudgetExceeded("over budget"), 402, {}),
    (AccessRefused("refused"), 403, {}),
    (ModelNotAllowed("not in the plan"), 403, {}),
    (NotFound("no such request"), 404, {}),
    (UnknownModel("no such model"), 404, {}),
    (MethodNotAllowed("GET is not allowed", allowed=("GET", "POST")), 405, {"Allow": "GET, POST"}),
    (IdempotencyInProgress("in progress"), 409, {"Retry-After": "2"}),
    (Expired("expired"), 410, {}),
    (IdempotencyKeyReused("other body"), 422, {}),
    (Unavailable(Dependency.LEDGER, "ledger down"), 503, {}),
    (Unavailable(Dependency.TENANT_REGISTRY, "registry down"), 503, {}),
    (Unavailable(Dependency.SCREEN, "screen down"), 503, {}),
    (NotCached("not cached"), 504, {"x-cache": "MISS"}),
    (CoalesceTimeout("waited in vain"), 504, {}),
]


@pytest.mark.parametrize(("error", "status", "headers"), ANSWERS, ids=lambda v: type(v).__name__)
def test_each_error_has_its_status_its_message_as_body_and_its_headers(error, status, headers):
    assert segmind_errors.answer(error) == segmind_errors.ErrorAnswer(status, {"error": error.message}, headers)


def test_every_domain_error_is_answered_by_the_map():
    defined = {
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, DomainError) and cls is not DomainError
    }
    assert defined == {type(error) for error, _, _ in ANSWERS} | {UpstreamFailure}


def test_validation_errors_list_each_bad_field():
    details = [{"field": "steps", "message": "'steps' must be at least 1"}]
    error = RequestInvalid("Invalid request: 'steps' must be at least 1", details=details)
    assert segmind_errors.body(error) == {"error": error.message, "errors": details}


@pytest.mark.parametrize(
    ("kind", "status"),
    [
        (FailureKind.TIMEOUT, 504),
        (FailureKind.CONNECTION, 502),
        (FailureKind.AUTH, 502),
        (FailureKind.CREDITS, 503),
        (FailureKind.RATE_LIMITED, 429),
        (FailureKind.SERVER_ERROR, 502),
        (FailureKind.REJECTED, 502),
        (FailureKind.INVALID_RESPONSE, 502),
        (FailureKind.CONFIG, 502),
        (FailureKind.SECRET, 502),
    ],
)
def test_upstream_failures_by_kind(kind, status):
    error = UpstreamFailure(kind, "failed", upstream_status=403 if kind is FailureKind.REJECTED else None)
    assert segmind_errors.status(error) == status
    assert segmind_errors.body(error) == {"error": "failed"}


@pytest.mark.parametrize(("upstream_status", "status"), [(400, 400), (422, 400), (403, 502), (404, 502)])
def test_a_request_segmind_found_invalid_is_the_clients_400_and_any_other_refusal_a_502(upstream_status, status):
    error = UpstreamFailure(FailureKind.REJECTED, "rejected", upstream_status=upstream_status)
    assert segmind_errors.status(error) == status


@pytest.mark.parametrize(("retry_after", "header"), [(59.6, "60"), (0.2, "1"), (0.0, "10"), (None, "10")])
def test_rate_limiting_says_when_to_retry(retry_after, header):
    error = UpstreamFailure(FailureKind.RATE_LIMITED, "slow down", upstream_status=429, retry_after=retry_after)
    assert segmind_errors.headers(error) == {"Retry-After": header}
    assert segmind_errors.headers(UpstreamFailure(FailureKind.TIMEOUT, "slow", retry_after=retry_after)) == {}


def test_only_transient_upstream_failures_are_retryable():
    retryable = {kind for kind in FailureKind if kind.retryable}
    assert retryable == {
        FailureKind.TIMEOUT,
        FailureKind.CONNECTION,
        FailureKind.RATE_LIMITED,
        FailureKind.SERVER_ERROR,
        FailureKind.SECRET,
    }
    for kind in FailureKind:
        assert UpstreamFailure(kind, "failed").retryable is kind.retryable


def test_outages_and_coalescing_timeouts_are_retryable_refusals_are_not():
    assert Unavailable(Dependency.STORAGE, "the images could not be stored").retryable
    assert CoalesceTimeout("waited").retryable
    refusals = (RequestInvalid("x"), BudgetExceeded("x"), AccessRefused("x"), NotFound("x"), NotCached("x"))
    assert not any(error.retryable for error in refusals)


def test_kinds_name_errors_in_logs_and_metrics():
    assert Unavailable(Dependency.JOB_STORE, "down").kind == "jobs"
    assert UpstreamFailure(FailureKind.AUTH, "refused").kind == "auth"
    assert (BudgetExceeded("x").kind, NotCached("x").kind, BodyTooLarge("x").kind) == (
        "budget",
        "not_cached",
        "invalid_request",
    )
