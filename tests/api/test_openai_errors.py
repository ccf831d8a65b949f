"""OpenAI's protocol gives each domain error a status (Segmind's, but 429 for a budget), OpenAI's error body and
the headers that keep the openai SDKs from retrying what cannot succeed."""

import pytest

from segmind_proxy.api import openai_errors
from segmind_proxy.domain.errors import (
    AccessRefused,
    BudgetExceeded,
    FailureKind,
    IdempotencyInProgress,
    ModelNotAllowed,
    NotCached,
    RequestInvalid,
    UnknownModel,
    UpstreamFailure,
)
from tests.api.test_segmind_errors import ANSWERS


@pytest.mark.parametrize(("error", "status", "headers"), ANSWERS, ids=lambda v: type(v).__name__)
def test_every_domain_error_has_an_openai_shaped_answer(error, status, headers):
    answer = openai_errors.answer(error)
    expected = 429 if isinstance(error, BudgetExceeded) else 404 if isinstance(error, ModelNotAllowed) else status
    assert answer.status == expected
    assert set(answer.body["error"]) == {"message", "type", "param", "code"}
    assert answer.body["error"]["message"] == error.message
    if answer.status >= 500 and not isinstance(error, NotCached):
        assert answer.body["error"]["type"] == "server_error"


def test_budget_is_insufficient_quota_not_retried():
    answer = openai_errors.answer(BudgetExceeded("over budget"))
    assert (answer.status, answer.body["error"]["code"], answer.headers) == (
        429,
        "insufficient_quota",
        {"x-should-retry": "false"},
    )


def test_validation_names_the_param_and_access_is_a_permission_error():
    error = RequestInvalid("bad size", details=[{"field": "size", "message": "bad size"}])
    assert openai_errors.answer(error).body["error"]["param"] == "size"
    assert openai_errors.answer(AccessRefused("no")).body["error"]["type"] == "permission_error"
    assert openai_errors.answer(UnknownModel("no")).body["error"] == {
        "message": "no",
        "type": "invalid_request_error",
        "param": "model",
        "code": "model_not_found",
    }


def test_retry_headers():
    assert openai_errors.answer(IdempotencyInProgress("wait")).headers == {"Retry-After": "2"}
    assert openai_errors.answer(NotCached("miss")).headers == {"x-cache": "MISS", "x-should-retry": "false"}
    credits = openai_errors.answer(UpstreamFailure(FailureKind.CREDITS, "out of credits"))
    assert credits.status == 503 and credits.headers == {"x-should-retry": "false"}
    timeout = openai_errors.answer(UpstreamFailure(FailureKind.TIMEOUT, "slow"))
    assert timeout.status == 504 and timeout.headers == {} and timeout.body["error"]["type"] == "server_error"
    limited = openai_errors.answer(UpstreamFailure(FailureKind.RATE_LIMITED, "slow down", retry_after=3))
    assert limited.status == 429 and limited.headers == {"Retry-After": "3"}
    assert limited.body["error"]["type"] == "rate_limit_error"


@pytest.mark.parametrize(
    ("path", "openai"),
    [
        ("/v1/chat/completions", True),
        ("/v1/images/edits", True),
        ("/v1/models", True),
        ("/v1/embeddings", True),
        ("/v1/stable-diffusion-3.5-turbo-txt2img", False),
        ("/v1/usage", False),
        ("/v2/requests/x", False),
        ("/chat/completions", False),
    ],
)
def test_which_paths_speak_openai(path, openai):
    assert openai_errors.speaks_openai(path) is openai
