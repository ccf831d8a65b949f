"""A local API Gateway (REST API, Lambda proxy integration): API key check against API Gateway's keys (moto),
REST proxy events with `requestContext.identity.apiKeyId`, binary media types, and API Gateway's own limits."""

from __future__ import annotations

import base64
import fnmatch
import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import UTC, datetime
from typing import Any

from werkzeug.wrappers import Request, Response

from .lambda_runtime import LocalFunction
from .template import Route, Stack

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


def _gateway_error(status: int, message: str) -> Response:
    # Mirrors the template's GatewayResponses: Segmind-style body, CORS header so browsers can read it.
    return Response(
        json.dumps({"error": message}),
        status=status,
        content_type="application/json",
        headers={"Access-Control-Allow-Origin": "*", "x-amzn-ErrorType": "GatewayError"},
    )


class LocalGateway:
    def __init__(self, stack: Stack, functions: dict[str, LocalFunction], api_keys: ApiKeys, stage: str) -> None:
        self.stack = stack
        self.routes: list[Route] = stack.routes()
        self.binary_types = stack.binary_media_types()
        self.functions = functions
        self.api_keys = api_keys
        self.limits = PlanLimits()
        self.stage = stage

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        return self.dispatch(Request(environ))(environ, start_response)

    def _find_route(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        for route in self.routes:
            params = route.match(method, path)
            if params is not None:
                return route, params
        return None

    def _is_binary(self, mimetype: str) -> bool:
        return any(fnmatch.fnmatch(mimetype or "", pattern) for pattern in self.binary_types)

    def dispatch(self, request: Request) -> Response:
        found = self._find_route(request.method, request.path)
        if found is None:
            return _gateway_error(404, "No such route (or missing x-api-key)")
        route, path_params = found
        key = None
        if route.api_key_required:
            key, plan = self.api_keys.lookup(request.headers.get("x-api-key"))
            if key is None or plan is None:  # API Gateway only accepts keys that are on a usage plan
                return _gateway_error(403, "Missing or invalid x-api-key")
            refusal = self.limits.check(key["id"], plan)
            if refusal:
                return _gateway_error(429, refusal)
        if (request.content_length or 0) > MAX_REQUEST_BYTES:
            return _gateway_error(413, "Request Too Long")
        event = self.event(request, route, path_params, key)
        future = self.functions[route.function].invoke(event)
        try:
            result = future.result(timeout=INTEGRATION_TIMEOUT_S)
        except FutureTimeout:
            return Response(
                json.dumps({"message": "Endpoint request timed out"}), status=504, content_type="application/json"
            )
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

    def event(
        self, request: Request, route: Route, path_params: dict[str, str], key: dict[str, Any] | None
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
        request_id = str(uuid.uuid4())
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
