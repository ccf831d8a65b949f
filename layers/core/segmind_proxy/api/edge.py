"""The edge, before any route runs: who is calling (the tenant behind API Gateway's key id, its origin), the body of
a generation parsed once and its cache read started alongside that check; and, after, the CORS headers a browser
key's answers carry. A caller refused here gets its answer without routing."""

from __future__ import annotations

import json
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial
from typing import Any

from aws_lambda_powertools.event_handler import CORSConfig

from segmind_proxy.api import openai_errors, openai_images, segmind_errors, segmind_v1
from segmind_proxy.api.delivery import Order
from segmind_proxy.api.headers import REPLAY_HEADER
from segmind_proxy.api.proxy_events import api_key_id, body_of, headers_of, path_parameter, request_id
from segmind_proxy.api.services import Services
from segmind_proxy.domain.errors import AccessRefused, Dependency, Outage, Unavailable
from segmind_proxy.domain.images import ImageResult
from segmind_proxy.domain.tenants import Tenant
from segmind_proxy.domain.usage import Caller, Usage, current_month
from segmind_proxy.flows.access import authorize, authorize_reading, known_namespace, namespace_of
from segmind_proxy.observability import logger
from segmind_proxy.settings import Settings

# Segmind's generation routes, one per catalog model (`{model}`: its slug), as API Gateway names their resources.
TXT2IMG_PATH = "/v1/{model}"
V2_PATH = "/v2/{model}"
# The routes whose body is parsed at the edge and whose cache read starts alongside the tenant check.
PREFETCHERS = {
    TXT2IMG_PATH: segmind_v1.prefetch_cache_read,
    V2_PATH: partial(segmind_v1.prefetch_cache_read, v2=True),
    openai_images.GENERATIONS_PATH: openai_images.prefetch_cache_read,
}
REQUEST_ID_HEADER = "x-request-id"
EXPOSED_HEADERS = [
    "x-cache",
    REQUEST_ID_HEADER,
    "x-seed-value",
    "x-images-delivered",
    "x-response-mode",
    "x-budget-remaining-credits",
    "x-budget-remaining-images",
    REPLAY_HEADER,
    "Retry-After",
]


# Beyond Powertools' defaults (Content-Type, X-Api-Key, Authorization, ...): ours, and those OpenAI's JavaScript SDK
# sends from a browser (`dangerouslyAllowBrowser`), without which its preflight fails and no request is sent.
ALLOWED_HEADERS = [
    "Authorization",
    "Cache-Control",
    "x-response-mode",
    "Idempotency-Key",
    "x-webhook-url",
    *(f"X-Stainless-{name}" for name in ("Lang", "Package-Version", "OS", "Arch", "Runtime", "Runtime-Version")),
    "X-Stainless-Retry-Count",
    "X-Stainless-Timeout",
    "OpenAI-Organization",
    "OpenAI-Project",
]


def cors_config(settings: Settings) -> CORSConfig:
    origins = settings.cors_allowed_origins or ["*"]
    return CORSConfig(
        allow_origin=origins[0],
        extra_origins=origins[1:],
        allow_headers=ALLOWED_HEADERS,
        expose_headers=EXPOSED_HEADERS,
        max_age=600,
    )


@dataclass(frozen=True)
class Admission:
    """A caller let in, and what the edge started for its request."""

    caller: Caller
    origin: str | None
    parsed: Order | None = None
    prefetched: Future[ImageResult | None] | None = None

    def answered(self, response: dict[str, Any]) -> dict[str, Any]:
        """A browser key's answers name its (already checked) origin, never `*`."""
        tenant = self.caller.tenant
        if tenant is None or not tenant.allowed_origins or not self.origin:
            return response
        multi = response.setdefault("multiValueHeaders", {})
        if any(k.lower() == "access-control-allow-origin" for k in multi):
            multi["Access-Control-Allow-Origin"] = [self.origin]
            multi["Vary"] = ["Origin"]
        return response


def admit(event: dict[str, Any], services: Services) -> Admission:
    """The caller, or AccessRefused (or Unavailable while the tenant registry is down) before any work."""
    key_id, origin = api_key_id(event), headers_of(event).get("origin")
    parsed, prefetched = _prefetch(event, key_id, services)
    try:
        tenant, usage = _authorized(event, key_id, origin, services, reads_cache=prefetched is not None)
    except Outage:
        logger.exception("Tenant registry unavailable")
        raise Unavailable(
            Dependency.TENANT_REGISTRY, "The tenant registry is unavailable; nothing was done, retry shortly"
        ) from None
    return Admission(Caller(tenant, namespace_of(tenant, key_id), usage), origin, parsed, prefetched)


def _authorized(
    event: dict[str, Any], key_id: str | None, origin: str | None, services: Services, *, reads_cache: bool
) -> tuple[Tenant | None, Usage | None]:
    """The tenant; and for a v1 generation that reads the cache, its month's usage, read with its profile: a hit's
    answer then has its budget figures without waiting for the hit to be counted."""
    if not reads_cache or services.ledger is None or event.get("resource") != TXT2IMG_PATH:
        return authorize(services.tenants, key_id, origin), None
    return authorize_reading(services.tenants, key_id, origin, current_month())


def _prefetch(
    event: dict[str, Any], key_id: str | None, services: Services
) -> tuple[Order | None, Future[ImageResult | None] | None]:
    """A generation's body is parsed once, here, and its cache read starts now, alongside the tenant check: one
    round trip in the time of two."""
    prefetcher = PREFETCHERS.get(event.get("resource", "")) if event.get("httpMethod") == "POST" else None
    if prefetcher is None:
        return None, None
    namespace = known_namespace(services.tenants, key_id)
    if namespace is None:
        return None, None
    return prefetcher(body_of(event), headers_of(event), path_parameter(event, "model"), namespace, services)


def refusal(event: dict[str, Any], refused: AccessRefused | Unavailable, cors: CORSConfig) -> dict[str, Any]:
    """An answer built before routing, in the protocol of the path: a refused origin gets no CORS headers, so
    browsers cannot read it."""
    errors = openai_errors if openai_errors.speaks_openai(event.get("path")) else segmind_errors
    answer = errors.answer(refused)
    origin = headers_of(event).get("origin")
    headers = {"Content-Type": "application/json", **answer.headers}
    if (not isinstance(refused, AccessRefused) or refused.cors) and origin:
        headers |= cors.to_dict(origin)
    logger.info("Request refused", extra={"status": answer.status, "reason": refused.message})
    return {
        "statusCode": answer.status,
        "headers": headers,
        "body": json.dumps(answer.body),
        "isBase64Encoded": False,
    }


def identified(response: dict[str, Any], event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Every answer of the function names its request in `x-request-id`: API Gateway's request id (which its own
    answers carry too, see template.yaml's GatewayResponses), or the invocation's where the event has none."""
    value = request_id(event) or getattr(context, "aws_request_id", "")
    multi = response.get("multiValueHeaders")
    named = {name.lower() for name in (*(response.get("headers") or {}), *(multi or {}))}
    if REQUEST_ID_HEADER not in named:
        if multi is not None:
            multi[REQUEST_ID_HEADER] = [value]
        else:
            response.setdefault("headers", {})[REQUEST_ID_HEADER] = value
    return response
