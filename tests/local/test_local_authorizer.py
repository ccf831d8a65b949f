"""The local API Gateway runs the template's key authorizers as API Gateway does: the identity source checked (and the
validation expression) before invoking, answers cached per header value for the TTL and their policy evaluated per
route, the key taken from `usageIdentifierKey` (key source AUTHORIZER) and then checked and metered exactly as an
x-api-key was, and the authorizer's context in `requestContext.authorizer`. The authorizer is the real function, in a
local Lambda container; the template is template.yaml plus one route as an OpenAI route is declared."""

import json
from concurrent.futures import Future
from typing import Any

import pytest
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from local.gateway import ApiKeys, LocalGateway
from local.lambda_runtime import LocalFunction
from local.template import Stack, load_template
from tests.fakes import FakeClock

KEY = "k-0123456789abcdefghij"
SEGMIND_ROUTE = "/v1/stable-diffusion-3.5-turbo-txt2img"
BEARER_ROUTE = "/v1/images/generations"


# API Gateway's own answers (template.yaml's GatewayResponses): one per API, so the same on every route, in OpenAI's
# error object.
def missing_key(answer: tuple[int, Any]) -> bool:
    """UNAUTHORIZED: no key in the header the route reads; the message says where each family reads it."""
    status, body = answer
    message = body["error"]["message"]
    return status == 401 and body["error"]["code"] == "missing_api_key" and "Authorization: Bearer" in message


def invalid_key(answer: tuple[int, Any]) -> bool:
    """INVALID_API_KEY: a key API Gateway does not know."""
    status, body = answer
    return status == 401 and body["error"]["code"] == "invalid_api_key"


class KeysOnOnePlan:
    """API Gateway's keys: KEY (id k1) on a plan with a quota of `quota` requests."""

    def __init__(self, quota: int = 1000) -> None:
        self.quota = quota

    def get_paginator(self, name: str) -> Any:
        class Pages:
            def paginate(self, **_: Any) -> list[dict[str, Any]]:
                return [{"items": [{"id": "k1", "value": KEY, "enabled": True}]}]

        return Pages()

    def get_usage_plans(self, keyId: str) -> dict[str, Any]:
        return {"items": [{"id": "plan", "quota": {"limit": self.quota, "period": "MONTH"}}]}


class Echo:
    """The API function: answers with the event it was given."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def invoke(self, event: dict[str, Any]) -> Future:
        self.events.append(event)
        done: Future = Future()
        done.set_result({"statusCode": 200, "body": json.dumps(event["requestContext"])})
        return done


def stack_with_a_bearer_route() -> Stack:
    template = load_template()
    events = template["Resources"]["ApiFunction"]["Properties"]["Events"]
    events["ImagesGenerations"] = {  # as the OpenAI routes are declared
        "Type": "Api",
        "Properties": {
            "RestApiId": {"Ref": "GatewayApi"},
            "Path": BEARER_ROUTE,
            "Method": "POST",
            "Auth": {"Authorizer": "BearerKey", "ApiKeyRequired": True},
        },
    }
    return Stack("authorizer-test", template)


@pytest.fixture(scope="module")
def authorizer_function():
    stack = stack_with_a_bearer_route()
    spec = stack.function("KeyAuthorizerFunction")
    function = LocalFunction(spec, {**spec.environment, "AWS_LAMBDA_FUNCTION_NAME": spec.logical_id}, 1)
    function.warm_up().result(timeout=60)
    yield function
    function.shutdown()


@pytest.fixture
def gateway(authorizer_function):
    def make(quota: int = 1000) -> tuple[LocalGateway, Echo, FakeClock]:
        stack, echo, clock = stack_with_a_bearer_route(), Echo(), FakeClock(now=100.0)
        functions = {"ApiFunction": echo, "KeyAuthorizerFunction": authorizer_function}
        gateway = LocalGateway(stack, functions, ApiKeys(KeysOnOnePlan(quota)), "prod")
        gateway.authorizers._clock = clock
        return gateway, echo, clock

    return make


def call(gateway: LocalGateway, path: str, headers: dict[str, str], method: str = "POST"):
    response = gateway.dispatch(Request(EnvironBuilder(path=path, method=method, headers=headers).get_environ()))
    return response.status_code, json.loads(response.get_data() or b"null")


def test_x_api_key_and_bearer_are_the_same_key_for_api_gateway_and_the_function(gateway):
    gw, _, _ = gateway()
    status, context = call(gw, SEGMIND_ROUTE, {"x-api-key": KEY})
    assert status == 200
    assert context["identity"]["apiKeyId"] == "k1" and context["identity"]["apiKey"] == KEY
    assert context["authorizer"]["keySource"] == "x-api-key" and context["authorizer"]["principalId"]
    status, context = call(gw, BEARER_ROUTE, {"Authorization": f"Bearer {KEY}"})
    assert status == 200
    assert context["identity"]["apiKeyId"] == "k1"
    assert context["authorizer"]["keySource"] == "bearer"


def test_segmind_routes_answer_a_missing_key_401_without_invoking_the_authorizer(gateway):
    gw, echo, _ = gateway()
    for headers in ({}, {"x-api-key": ""}, {"x-api-key": "two words"}, {"Authorization": f"Bearer {KEY}"}):
        assert missing_key(call(gw, SEGMIND_ROUTE, headers)), headers
    assert gw.authorizers.invocations == 0 and echo.events == []


def test_bearer_routes_refuse_a_missing_or_malformed_authorization_without_invoking_the_authorizer(gateway):
    gw, echo, _ = gateway()
    for headers in ({}, {"x-api-key": KEY}, {"Authorization": KEY}, {"Authorization": "Basic dXNlcjpwYXNz"}):
        assert missing_key(call(gw, BEARER_ROUTE, headers)), headers
    assert gw.authorizers.invocations == 0 and echo.events == []


def test_an_unknown_key_is_refused_by_the_key_check_401(gateway):
    gw, echo, _ = gateway()
    assert invalid_key(call(gw, SEGMIND_ROUTE, {"x-api-key": "not-a-key-of-this-api"}))
    assert invalid_key(call(gw, BEARER_ROUTE, {"Authorization": "Bearer not-a-key-of-this-api"}))
    assert gw.authorizers.invocations == 2 and echo.events == []


def test_an_answer_is_cached_per_header_value_for_the_ttl_and_serves_every_route(gateway):
    gw, _, clock = gateway()
    assert call(gw, SEGMIND_ROUTE, {"x-api-key": KEY})[0] == 200
    assert call(gw, "/v1/usage", {"x-api-key": KEY}, method="GET")[0] == 200  # the stage-wide policy, cached
    assert gw.authorizers.invocations == 1
    assert call(gw, BEARER_ROUTE, {"Authorization": f"Bearer {KEY}"})[0] == 200  # another header value
    assert gw.authorizers.invocations == 2
    clock.advance(300)  # KeyAuthorizerCacheSeconds
    assert call(gw, SEGMIND_ROUTE, {"x-api-key": KEY})[0] == 200
    assert gw.authorizers.invocations == 3


def test_both_headers_count_against_the_same_plan_quota(gateway):
    gw, _, _ = gateway(quota=3)
    assert call(gw, SEGMIND_ROUTE, {"x-api-key": KEY})[0] == 200
    assert call(gw, BEARER_ROUTE, {"Authorization": f"Bearer {KEY}"})[0] == 200
    assert call(gw, SEGMIND_ROUTE, {"x-api-key": KEY})[0] == 200
    status, body = call(gw, BEARER_ROUTE, {"Authorization": f"Bearer {KEY}"})
    assert (status, body["error"]["code"]) == (429, "quota_exceeded")


def test_public_routes_need_neither_key_nor_authorizer(gateway):
    gw, _, _ = gateway()
    status, context = call(gw, "/v1/health", {}, method="GET")
    assert status == 200 and "authorizer" not in context and context["identity"]["apiKeyId"] is None
    assert gw.authorizers.invocations == 0


class Scripted:
    """An authorizer function whose answer (or error) the test sets."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer

    def invoke(self, event: dict[str, Any]) -> Future:
        done: Future = Future()
        if isinstance(self.answer, Exception):
            done.set_exception(self.answer)
        else:
            done.set_result(self.answer)
        return done


def policy_for(resource: str) -> dict[str, Any]:
    statement = {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": resource}
    return {"principalId": "p", "policyDocument": {"Statement": [statement]}, "usageIdentifierKey": KEY}


def test_a_cached_policy_is_evaluated_against_each_route(gateway):
    """Why the authorizer allows the whole stage: a cached policy naming one route refuses the others."""
    gw, _, _ = gateway()
    gw.authorizers._functions = {
        "KeyAuthorizerFunction": Scripted(policy_for(gw.method_arn_for("POST", SEGMIND_ROUTE)))
    }
    assert call(gw, SEGMIND_ROUTE, {"x-api-key": KEY})[0] == 200
    status, body = call(gw, "/v1/usage", {"x-api-key": KEY}, method="GET")  # ACCESS_DENIED
    assert (status, body["error"]["code"]) == (403, "access_denied")
    assert gw.authorizers.invocations == 1


@pytest.mark.parametrize(
    ("answer", "status"),
    [(RuntimeError("boom"), 500), ({"usageIdentifierKey": KEY}, 500), (PermissionError("Unauthorized"), 401)],
)
def test_an_authorizer_that_fails_is_answered_as_api_gateway_does(gateway, answer, status):
    gw, echo, _ = gateway()
    gw.authorizers._functions = {"KeyAuthorizerFunction": Scripted(answer)}
    assert call(gw, SEGMIND_ROUTE, {"x-api-key": KEY})[0] == status
    assert echo.events == []


def test_api_gateways_own_answers_name_their_request(gateway):
    """`x-request-id` on API Gateway's refusals too (`context.requestId`), as on every answer of the function."""
    gw, _, _ = gateway()
    for path, headers in ((SEGMIND_ROUTE, {}), (SEGMIND_ROUTE, {"x-api-key": "unknown"}), ("/nowhere", {})):
        response = gw.dispatch(Request(EnvironBuilder(path=path, method="POST", headers=headers).get_environ()))
        assert response.status_code in (401, 404)
        assert response.headers["x-request-id"] == response.headers["x-amzn-RequestId"] != ""


def test_a_method_a_resource_lacks_goes_to_its_any_method_never_to_a_greedy_resource(gateway):
    """As API Gateway selects: the resource by its path, then the method; the function answers it (405)."""
    gw, _, _ = gateway()
    status, context = call(gw, SEGMIND_ROUTE, {}, method="GET")
    assert status == 200 and context["resourcePath"] == "/v1/{model}" and context["httpMethod"] == "GET"
    status, context = call(gw, "/v1/usage", {}, method="POST")  # a literal resource before the one with {model}
    assert status == 200 and context["resourcePath"] == "/v1/usage"
    assert gw.authorizers.invocations == 0  # the resource's ANY method is keyless
    status, context = call(gw, "/v1/chat/completions", {"x-api-key": KEY}, method="GET")
    assert status == 200 and context["resourcePath"] == "/v1/{proxy+}"  # no such resource: the greedy one
