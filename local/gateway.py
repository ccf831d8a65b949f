"""A local API Gateway (REST API, Lambda proxy integration): Lambda authorizers (their identity sources, validation
expressions, cached answers and policies), the API key check against API Gateway's keys (moto) with the key from the
API's key source (the x-api-key header, or the authorizer's `usageIdentifierKey`), REST proxy events with
`requestContext.identity.apiKeyId` and `requestContext.authorizer`, binary media types, the template's gateway
responses, and API Gateway's own limits."""

from __future__ import annotations

import base64
import fnmatch
import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import UTC, datetime
from functools import partial
from typing import Any

from werkzeug.wrappers import Request, Response

from .lambda_runtime import LocalFunction
from .template import AuthorizerSpec, Route, Stack

INTEGRATION_TIMEOUT_S = 29
MAX_REQUEST_BYTES = 10 * 1024 * 1024
MAX_LAMBDA_RESPONSE_BYTES = 6 * 1024 * 1024


class ApiKeys:
    """API Gateway's keys and their usage plans (from moto), cached for a couple of seconds as API Gateway caches
    them. Suspension, rotation and deletion still apply at once: the function checks its registry every request.

    A key in use is looked up again in the background once its entry is TTL_SECONDS old, and served from the entry
    meanwhile, so that no request waits on the lookup's two moto calls, as none waits on API Gateway's cache. An
    entry older than STALE_SECONDS (a key idle that long) is looked up before answering."""

    TTL_SECONDS = 2.0
    STALE_SECONDS = 2 * TTL_SECONDS

    def __init__(self, apigw: Any, clock: Any = time.monotonic) -> None:
        self._apigw = apigw
        self._clock = clock
        self._cache: dict[str, tuple[float, dict[str, Any] | None, dict[str, Any] | None]] = {}
        self._refreshing: set[str] = set()
        self._lock = threading.Lock()
        self._background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="api-keys")

    def lookup(self, value: str | None) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """(key, its usage plan), or Nones for an unknown or disabled key."""
        if not value:
            return None, None
        cached = self._cache.get(value)
        if cached is None or (age := self._clock() - cached[0]) >= self.STALE_SECONDS:
            return self._refresh(value)
        if age >= self.TTL_SECONDS:
            with self._lock:
                starting = value not in self._refreshing
                self._refreshing.add(value)
            if starting:
                self._background.submit(self._refresh_in_background, value)
        return cached[1], cached[2]

    def _refresh(self, value: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        key = self._find(value)
        plan = self._plan(key["id"]) if key else None
        self._cache[value] = (self._clock(), key, plan)
        return key, plan

    def _refresh_in_background(self, value: str) -> None:
        try:
            self._refresh(value)
        except Exception as exc:  # the entry stays; once stale, the next request looks the key up itself
            print(f"[api keys] refreshing a key failed: {type(exc).__name__}: {exc}", flush=True)
        finally:
            with self._lock:
                self._refreshing.discard(value)

    def _find(self, value: str) -> dict[str, Any] | None:
        paginator = self._apigw.get_paginator("get_api_keys")
        for page in paginator.paginate(includeValues=True):
            for key in page.get("items", []):
                if key.get("value") == value:
                    return key if key.get("enabled") else None
        return None

    def _plan(self, key_id: str) -> dict[str, Any] | None:
        plans = self._apigw.get_usage_plans(keyId=key_id).get("items", [])
        return plans[0] if plans else None


class PlanLimits:
    """A usage plan's throttle (token bucket: rate per second, burst) and quota per key, as API Gateway applies them."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # key id -> (tokens, last refill)
        self._counts: dict[tuple[str, str], int] = {}  # (key id, period) -> requests

    def check(self, key_id: str, plan: dict[str, Any]) -> str | None:
        """None if allowed (and counted), else API Gateway's message for the 429."""
        throttle, quota = plan.get("throttle") or {}, plan.get("quota")
        with self._lock:
            if throttle:
                rate, burst = float(throttle.get("rateLimit", 0)), float(throttle.get("burstLimit", 0))
                now = self._clock()
                tokens, last = self._buckets.get(key_id, (burst, now))
                tokens = min(burst, tokens + (now - last) * rate)
                if tokens < 1:
                    self._buckets[key_id] = (tokens, now)
                    return "Too Many Requests"
                self._buckets[key_id] = (tokens - 1, now)
            if quota:
                period = (key_id, _period(quota.get("period", "MONTH")))
                if self._counts.get(period, 0) >= int(quota["limit"]):
                    return "Limit Exceeded"
                self._counts[period] = self._counts.get(period, 0) + 1
        return None


def _period(kind: str) -> str:
    now = datetime.now(UTC)
    if kind == "DAY":
        return now.strftime("%Y-%m-%d")
    if kind == "WEEK":
        return now.strftime("%G-W%V")
    return now.strftime("%Y-%m")


# API Gateway's own answers, by gateway response type: its status and `$context.error.message` when the template does
# not set them.
GATEWAY_DEFAULTS = {
    "MISSING_AUTHENTICATION_TOKEN": (403, "Missing Authentication Token"),
    "UNAUTHORIZED": (401, "Unauthorized"),
    "ACCESS_DENIED": (403, "User is not authorized to access this resource"),
    "INVALID_API_KEY": (403, "Forbidden"),
    "INTEGRATION_TIMEOUT": (504, "Endpoint request timed out"),
    "THROTTLED": (429, "Too Many Requests"),
    "QUOTA_EXCEEDED": (429, "Limit Exceeded"),
    "REQUEST_TOO_LARGE": (413, "Request Too Long"),
    "AUTHORIZER_FAILURE": (500, "Internal server error"),
    "AUTHORIZER_CONFIGURATION_ERROR": (500, "Internal server error"),
}


def gateway_response(
    responses: dict[str, Any], kind: str, message: str | None = None, context: dict[str, str] | None = None
) -> Response:
    """API Gateway's answer of type `kind`, as the template's GatewayResponses shape it (else DEFAULT_4XX/5XX, else
    API Gateway's own `{"message": ...}`). As on API Gateway, the body template is not VTL: its `$context.*` variables
    are substituted as they are, and a header is either a 'static value' or a `context.*` variable. `context`: the
    request's context variables (`requestId`, ...)."""
    status, default_message = GATEWAY_DEFAULTS[kind]
    variables = {"error.message": message or default_message, **(context or {})}
    entry = responses.get(kind) or responses.get("DEFAULT_5XX" if status >= 500 else "DEFAULT_4XX") or {}
    status = int(entry.get("StatusCode", status))
    template = (entry.get("ResponseTemplates") or {}).get("application/json")
    if template:
        body = re.sub(r"\$context\.([\w.]+)", lambda found: variables.get(found[1], ""), template)
    else:
        body = json.dumps({"message": variables["error.message"]})
    headers = {
        name: _header_value(str(value), variables)
        for name, value in (entry.get("ResponseParameters") or {}).get("Headers", {}).items()
    }
    return Response(
        body, status=status, content_type="application/json", headers={**headers, "x-amzn-ErrorType": "GatewayError"}
    )


def _header_value(mapping: str, variables: dict[str, str]) -> str:
    """A gateway response's header mapping: `'static'`, or `context.<name>` (empty when the variable is unknown)."""
    if mapping.startswith("context."):
        return variables.get(mapping.removeprefix("context."), "")
    return mapping.strip("'")


class Authorizers:
    """The API's Lambda authorizers as API Gateway runs them: a missing identity source (or, for a TOKEN authorizer, a
    token its validation expression refuses) is UNAUTHORIZED without invoking the function; an answer is cached per
    authorizer and identity value for its TTL (ReauthorizeEvery), and its policy is evaluated against each request's
    method ARN, cached or not; an error whose message is `Unauthorized` is UNAUTHORIZED (and not cached); any other
    error, or an answer without a principal or policy, is a 500."""

    def __init__(
        self, specs: dict[str, AuthorizerSpec], functions: dict[str, LocalFunction], clock: Any = time.monotonic
    ) -> None:
        self.specs = specs
        self._functions = functions
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, ...], tuple[float, dict[str, Any]]] = {}
        self.invocations = 0

    def authorize(
        self, name: str, request: Request, method_arn: str, request_event: Any
    ) -> tuple[str | None, dict[str, Any]]:
        """(None, the authorizer's answer) if allowed, else (the gateway response type, {})."""
        spec = self.specs[name]
        values = [request.headers.get(header) for header in spec.headers]
        if not all(values):
            return "UNAUTHORIZED", {}
        if spec.validation and not re.fullmatch(spec.validation, values[0] or ""):
            return "UNAUTHORIZED", {}
        cache_key = (name, *(value or "" for value in values))
        with self._lock:
            cached = self._cache.get(cache_key)
        if cached is not None and self._clock() - cached[0] < spec.ttl_seconds:
            answer = cached[1]
        else:
            if spec.payload_type == "TOKEN":
                event = {"type": "TOKEN", "authorizationToken": values[0], "methodArn": method_arn}
            else:
                event = {"type": "REQUEST", "methodArn": method_arn, **request_event()}
            self.invocations += 1
            started = time.monotonic()
            try:
                answer = self._functions[spec.function].invoke(event).result(timeout=INTEGRATION_TIMEOUT_S)
            except Exception as exc:
                if str(exc) == "Unauthorized":
                    return "UNAUTHORIZED", {}
                print(f"[{spec.function}] authorizer failed: {type(exc).__name__}: {exc}", flush=True)
                return "AUTHORIZER_FAILURE", {}
            if not isinstance(answer, dict) or not answer.get("principalId") or not answer.get("policyDocument"):
                return "AUTHORIZER_CONFIGURATION_ERROR", {}
            answer = {**answer, "integrationLatency": int((time.monotonic() - started) * 1000)}
            if spec.ttl_seconds > 0:
                with self._lock:
                    self._cache[cache_key] = (self._clock(), answer)
        if not _allows(answer["policyDocument"], method_arn):
            return "ACCESS_DENIED", {}
        return None, answer


def _allows(policy: dict[str, Any], method_arn: str) -> bool:
    """An IAM policy for execute-api:Invoke on `method_arn`: allowed by a statement, and denied by none."""
    allowed = False
    statements = policy.get("Statement") or []
    for statement in statements if isinstance(statements, list) else [statements]:
        actions, resources = statement.get("Action", []), statement.get("Resource", [])
        actions = actions if isinstance(actions, list) else [actions]
        resources = resources if isinstance(resources, list) else [resources]
        if not any(action in ("*", "execute-api:*", "execute-api:Invoke") for action in actions):
            continue
        if any(fnmatch.fnmatchcase(method_arn, resource) for resource in resources):
            if statement.get("Effect") == "Deny":
                return False
            allowed = allowed or statement.get("Effect") == "Allow"
    return allowed


def _context_value(value: Any) -> str:
    # API Gateway hands the function an authorizer's context values as strings.
    return str(value).lower() if isinstance(value, bool) else str(value)


class LocalGateway:
    def __init__(self, stack: Stack, functions: dict[str, LocalFunction], api_keys: ApiKeys, stage: str) -> None:
        self.stack = stack
        self.routes: list[Route] = stack.routes()
        self.binary_types = stack.binary_media_types()
        self.functions = functions
        self.api_keys = api_keys
        self.limits = PlanLimits()
        self.stage = stage
        self.key_source = stack.api_key_source()
        self.authorizers = Authorizers(stack.authorizers(), functions)
        self.gateway_responses = stack.api().get("GatewayResponses", {})

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        return self.dispatch(Request(environ))(environ, start_response)

    def _find_route(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        """As API Gateway selects: the most specific resource whose path matches first, then its method (or its ANY
        method). A method the resource lacks is not looked for on another resource (a greedy `{proxy+}` one)."""
        resource = next((route.path for route in self.routes if route.serves_path(path)), None)
        candidates = [route for route in self.routes if route.path == resource]
        for route in sorted(candidates, key=lambda r: r.method == "ANY"):
            params = route.match(method, path)
            if params is not None:
                return route, params
        return None

    def _is_binary(self, mimetype: str) -> bool:
        return any(fnmatch.fnmatch(mimetype or "", pattern) for pattern in self.binary_types)

    def method_arn_for(self, method: str, path: str) -> str:
        api_id = self.stack.physical.get("GatewayApi", "local")
        return f"arn:aws:execute-api:{self.stack.region}:{self.stack.account}:{api_id}/{self.stage}/{method}{path}"

    def dispatch(self, request: Request) -> Response:
        request_id = str(uuid.uuid4())  # API Gateway's: the event's requestId and `context.requestId` alike
        answer = self._answer(request, request_id)
        answer.headers["x-amzn-RequestId"] = request_id  # as API Gateway names every answer
        return answer

    def _answer(self, request: Request, request_id: str) -> Response:
        refuse = partial(self._refusal, request=request, request_id=request_id)
        found = self._find_route(request.method, request.path)
        if found is None:
            return refuse("MISSING_AUTHENTICATION_TOKEN")
        route, path_params = found
        # As API Gateway: the authorizer first, then the API key (from the key source) and its usage plan.
        key_value = request.headers.get("x-api-key") if self.key_source == "HEADER" else None
        authorizer: dict[str, Any] | None = None
        if route.authorizer:
            refused, answer = self.authorizers.authorize(
                route.authorizer,
                request,
                self.method_arn_for(request.method, request.path),
                lambda: self.event(request, route, path_params, None, request_id),
            )
            if refused:
                return refuse(refused)
            authorizer = {
                "principalId": answer["principalId"],
                "integrationLatency": answer["integrationLatency"],
                **{name: _context_value(value) for name, value in (answer.get("context") or {}).items()},
            }
            if self.key_source == "AUTHORIZER":
                key_value = answer.get("usageIdentifierKey")
        key = None
        if route.api_key_required:
            key, plan = self.api_keys.lookup(key_value)
            if key is None or plan is None:  # API Gateway only accepts keys that are on a usage plan
                return refuse("INVALID_API_KEY")
            limited = self.limits.check(key["id"], plan)
            if limited:
                return refuse("THROTTLED" if limited == "Too Many Requests" else "QUOTA_EXCEEDED", limited)
        if (request.content_length or 0) > MAX_REQUEST_BYTES:
            return refuse("REQUEST_TOO_LARGE")
        event = self.event(request, route, path_params, key, request_id)
        if authorizer is not None:
            event["requestContext"]["authorizer"] = authorizer
        return self._integrate(route, event, refuse)

    def _integrate(self, route: Route, event: dict[str, Any], refuse: Callable[..., Response]) -> Response:
        """The Lambda proxy integration: the function's answer, or API Gateway's when it has none."""
        future = self.functions[route.function].invoke(event)
        try:
            result = future.result(timeout=INTEGRATION_TIMEOUT_S)
        except FutureTimeout:
            return refuse("INTEGRATION_TIMEOUT")
        except Exception as exc:  # an unhandled error in the function: API Gateway answers 502
            cause = getattr(exc, "__cause__", None)  # the container's traceback, as Lambda would log it
            print(f"[{route.function}] unhandled {type(exc).__name__}: {exc}\n{cause or ''}", flush=True)
            return Response(
                json.dumps({"message": "Internal server error"}), status=502, content_type="application/json"
            )
        if len(json.dumps(result)) > MAX_LAMBDA_RESPONSE_BYTES:
            # Lambda refuses such a response (and API Gateway answers 502): make the same mistake visible locally.
            return Response(
                json.dumps({"message": "Internal server error"}), status=502, content_type="application/json"
            )
        return self.response(result)

    def _refusal(self, kind: str, message: str | None = None, *, request: Request, request_id: str) -> Response:
        context = {"requestId": request_id, "httpMethod": request.method, "path": request.path}
        return gateway_response(self.gateway_responses, kind, message, context)

    def event(
        self,
        request: Request,
        route: Route,
        path_params: dict[str, str],
        key: dict[str, Any] | None,
        request_id: str,
    ) -> dict[str, Any]:
        raw = request.get_data()
        binary = self._is_binary(request.mimetype)
        body: str | None
        if not raw:
            body = None
        elif binary:
            body = base64.b64encode(raw).decode()
        else:
            body = raw.decode("utf-8", errors="replace")
        headers: dict[str, list[str]] = {}
        for name, value in request.headers.items():
            headers.setdefault(name, []).append(value)
        headers.setdefault("X-Forwarded-Proto", [request.scheme])
        query: dict[str, list[str]] = {k: request.args.getlist(k) for k in request.args}
        now = datetime.now(UTC)
        return {
            "resource": route.path,
            "path": request.path,
            "httpMethod": request.method,
            "headers": {k: v[-1] for k, v in headers.items()},
            "multiValueHeaders": headers,
            "queryStringParameters": {k: v[-1] for k, v in query.items()} or None,
            "multiValueQueryStringParameters": query or None,
            "pathParameters": path_params or None,
            "stageVariables": None,
            "body": body,
            "isBase64Encoded": bool(body) and binary,
            "requestContext": {
                "resourceId": "local",
                "resourcePath": route.path,
                "httpMethod": request.method,
                "extendedRequestId": request_id,
                "requestTime": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
                "requestTimeEpoch": int(time.time() * 1000),
                "path": request.path,  # served at the root, like a custom domain without a base path
                "accountId": self.stack.account,
                "protocol": request.environ.get("SERVER_PROTOCOL", "HTTP/1.1"),
                "stage": self.stage,
                "domainPrefix": "localhost",
                "domainName": request.host,
                "requestId": request_id,
                "apiId": self.stack.physical.get("GatewayApi", "local"),
                "identity": {
                    "apiKey": key["value"] if key else None,
                    "apiKeyId": key["id"] if key else None,
                    "sourceIp": request.remote_addr,
                    "userAgent": request.headers.get("User-Agent"),
                    "accessKey": None,
                    "accountId": None,
                    "caller": None,
                    "user": None,
                    "userArn": None,
                    "cognitoIdentityId": None,
                    "cognitoIdentityPoolId": None,
                    "cognitoAuthenticationType": None,
                    "cognitoAuthenticationProvider": None,
                },
            },
        }

    def response(self, result: dict[str, Any]) -> Response:
        body = result.get("body") or ""
        data = base64.b64decode(body) if result.get("isBase64Encoded") else body.encode()
        response = Response(data, status=int(result.get("statusCode", 200)))
        response.headers.clear()
        for name, value in (result.get("headers") or {}).items():
            response.headers[name] = str(value)
        for name, values in (result.get("multiValueHeaders") or {}).items():
            response.headers.remove(name)
            for value in values:
                response.headers.add(name, str(value))
        response.headers["Content-Length"] = str(len(data))
        return response
