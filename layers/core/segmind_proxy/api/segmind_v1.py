"""Segmind's v1 front door, HTTP-shaped but free of any web framework: parse and check the request once, build its
scope and plan, call the generate-or-serve flow, and answer (see `delivery`)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from concurrent.futures import Future

from segmind_proxy.api.delivery import Answer, Reply, ResponseMode, deliver
from segmind_proxy.api.headers import REPLAY_HEADER, idempotency_key
from segmind_proxy.api.services import Incoming, Services
from segmind_proxy.domain import pricing
from segmind_proxy.domain.cache_policy import CachePolicy, CacheStatus
from segmind_proxy.domain.catalog import Catalog, ModelSpec
from segmind_proxy.domain.errors import (
    BodyTooLarge,
    RequestInvalid,
    UnknownModel,
    UnsupportedEncoding,
    UnsupportedMediaType,
)
from segmind_proxy.domain.images import ImageResult
from segmind_proxy.domain.request import Txt2ImgRequest, parse_request
from segmind_proxy.domain.tenants import Tenant
from segmind_proxy.domain.usage import Caller
from segmind_proxy.flows.access import check_model
from segmind_proxy.flows.billing import (
    TenantBilling,
    billing_for,
    counting_rejections,
    request_hold,
)
from segmind_proxy.flows.idempotent import Keyed
from segmind_proxy.flows.scope import InlineAnswer, Plan, RequestScope
from segmind_proxy.observability import logger, metrics
from segmind_proxy.settings import Settings

RESPONSE_MODE_HEADER = "x-response-mode"


def response_mode(headers: Mapping[str, str]) -> ResponseMode:
    raw = headers.get(RESPONSE_MODE_HEADER)
    if raw is None:
        return ResponseMode.INLINE
    try:
        return ResponseMode(raw.strip().lower())  # an empty value too is refused: it is no mode
    except ValueError:
        allowed = ", ".join(mode.value for mode in ResponseMode)
        raise RequestInvalid(f"Header '{RESPONSE_MODE_HEADER}' must be one of: {allowed}") from None


def check_content_type(content_type: str | None) -> None:
    media_type = (content_type or "").split(";")[0].strip().lower()
    if media_type != "application/json":
        shown = media_type or "none"
        raise UnsupportedMediaType(f"Content-Type must be application/json (got {shown})")


def check_content_encoding(content_encoding: str | None) -> None:
    # A compressed body would otherwise fail as "not valid JSON", which hides the cause.
    codings = [c.strip().lower() for c in (content_encoding or "").split(",") if c.strip()]
    unsupported = [c for c in codings if c != "identity"]
    if unsupported:
        raise UnsupportedEncoding(
            f"Content-Encoding '{', '.join(unsupported)}' is not supported: send the JSON body uncompressed"
        )


def check_body(body: bytes | None, headers: Mapping[str, str], settings: Settings) -> None:
    """The body's size and media type, checked before it is parsed (every front door's JSON body)."""
    if body is not None and len(body) > settings.max_body_bytes:
        raise BodyTooLarge(f"Request body is larger than {settings.max_body_bytes} bytes")
    check_content_type(headers.get("content-type"))
    check_content_encoding(headers.get("content-encoding"))


def model_named(catalog: Catalog, name: str) -> ModelSpec:
    """The catalog model a Segmind route's path names by its slug, or UnknownModel (404) saying where the models are
    listed. A name that is not a plain slug (path tricks, control characters, a very long one) is not echoed."""
    model = catalog.find(name)
    if model is None or model.slug != name:
        shown = f"'{name}'" if _PLAIN_NAME.fullmatch(name) else "asked for"
        raise UnknownModel(
            f"No model {shown} on this gateway: GET /v1/models lists the models (with a Bearer key), and /docs their "
            "routes and fields"
        )
    return model


_PLAIN_NAME = re.compile(r"[A-Za-z0-9._-]{1,100}")


def parse_body(body: bytes | None, headers: Mapping[str, str], services: Services, model: str) -> Txt2ImgRequest:
    """A Segmind body for the model its path names, checked (size, media type) and parsed: what v1 and v2 read."""
    spec = model_named(services.catalog, model)
    check_body(body, headers, services.settings)
    return parse_request(body, spec)


def validate(
    body: bytes | None, headers: Mapping[str, str], services: Services, model: str
) -> tuple[Txt2ImgRequest, ResponseMode]:
    """Every check of a v1 request that needs no I/O, so a bad request costs nothing."""
    request = parse_body(body, headers, services, model)
    mode = response_mode(headers)
    if not request.base64 and request.count > 1:
        mode = ResponseMode.URL  # a raw answer carries one image: a batch comes back as URLs, none lost
    return request, mode


Parsed = tuple[Txt2ImgRequest, ResponseMode]


def prefetch_cache_read(
    body: bytes | None,
    headers: Mapping[str, str],
    model: str,
    namespace: str,
    services: Services,
    *,
    v2: bool = False,
) -> tuple[Parsed | None, Future[ImageResult | None] | None]:
    """The body parsed once, at the edge, and the cache read of a request that will make one, started so that it
    overlaps the tenant check; None for a request that would not read the cache (invalid, random seed,
    `no-cache`). Its answer is used only once authorized. A v2 submit only ever checks that the images exist (its
    result is URLs). An invalid body is parsed again by its route, which refuses it and counts the refusal."""
    try:
        # A v2 submit reads no response mode: its result is always URLs.
        parsed = (
            (parse_body(body, headers, services, model), ResponseMode.URL)
            if v2
            else validate(body, headers, services, model)
        )
    except (RequestInvalid, UnknownModel):
        return None, None
    request, mode = parsed
    return parsed, start_cache_read(request, headers, namespace, services, by_url=mode is ResponseMode.URL)


def start_cache_read(
    request: Txt2ImgRequest, headers: Mapping[str, str], namespace: str, services: Services, *, by_url: bool
) -> Future[ImageResult | None] | None:
    """The cache read of a request that will make one (a fixed seed, no `no-cache`), started now; else None."""
    if not CachePolicy.from_header(headers.get("cache-control")).reads(request):
        return None
    return services.generation.prefetch(request, namespace, by_url=by_url)


def handle_txt2img(incoming: Incoming, caller: Caller, services: Services) -> Reply:
    """Validate, generate or serve (once per Idempotency-Key), and answer; a refusal is counted for the tenant."""
    settings, service = services.settings, services.generation
    with counting_rejections(caller.tenant, services.ledger, service.later):
        request, mode = incoming.parsed or validate(incoming.body, incoming.headers, services, incoming.model)
        key = idempotency_key(incoming.headers) if services.once else None
    check_model(caller.tenant, request.model)
    scope = request_scope(request, caller, incoming, services)
    plan = plan_for(request, mode, incoming.headers, settings, idempotent=key is not None)
    # A key is its tenant's, on one route of one model: the same body sent to another model is another request.
    keyed = Keyed(key, f"v1/{request.slug}", incoming.body, incoming.context) if key is not None else None
    try:
        result, replayed = generate_or_replay(request, scope, plan, keyed, services)
        if not replayed:
            report(request, result, caller.tenant, settings)
        reply = deliver(result, Answer(request.base64, mode, incoming.request_id), scope.namespace, services)
    except BaseException:
        scope.billing.refund()  # paid images that reach the client neither now nor by a replay are not charged
        raise
    return answered(reply, scope, replayed=replayed)


def request_scope(request: Txt2ImgRequest, caller: Caller, incoming: Incoming, services: Services) -> RequestScope:
    """A synchronous request's scope: its reservation is its own until its invocation has surely ended."""
    hold = request_hold(incoming.request_id, incoming.deadline, services.settings)
    billing = billing_for(request, caller, services.ledger, hold)
    return RequestScope(caller, incoming.request_id, incoming.deadline, billing, incoming.prefetched)


def generate_or_replay(
    request: Txt2ImgRequest, scope: RequestScope, plan: Plan, keyed: Keyed | None, services: Services
) -> tuple[ImageResult, bool]:
    """The images, generated or served (once per Idempotency-Key when `keyed`), and whether they are a replay. A
    402 (over budget) is refused before any cost, and counted, as a 400 is."""
    with counting_rejections(scope.caller.tenant, services.ledger, services.generation.later):
        if keyed is None or services.once is None:
            return services.generation.generate(request, scope, plan), False
        return services.once.generate(request, scope, plan, keyed)


def answered(reply: Reply, scope: RequestScope, *, replayed: bool) -> Reply:
    """The headers every synchronous answer carries beyond the images': a replay says so, and a billed request
    shows what is left of its budgets."""
    if replayed:
        reply.headers[REPLAY_HEADER] = "true"
    if isinstance(scope.billing, TenantBilling):
        reply.headers.update(budget_headers(scope.billing.remaining()))
    return reply


def plan_for(
    request: Txt2ImgRequest, mode: ResponseMode, headers: Mapping[str, str], settings: Settings, *, idempotent: bool
) -> Plan:
    """An answer that carries the images whole need not wait for them to be cached (see `after_response`); a
    replay must find them stored."""
    inline = mode is ResponseMode.INLINE and not idempotent and settings.store_after_answer
    return Plan(
        CachePolicy.from_header(headers.get("cache-control")),
        by_url=mode is ResponseMode.URL,
        must_store=idempotent,
        inline=InlineAnswer(request.base64, settings.inline_response_max_bytes) if inline else None,
    )


def budget_headers(remaining: Mapping[str, float | int | None]) -> dict[str, str]:
    return {f"x-budget-remaining-{unit}": str(value) for unit, value in remaining.items() if value is not None}


def report(
    request: Txt2ImgRequest,
    result: ImageResult,
    tenant: Tenant | None,
    settings: Settings,
    extra: Mapping[str, str] | None = None,
) -> None:
    """Per-request figures as EMF metadata (searchable in Logs Insights, free of metric-dimension cost); `extra`:
    what a front door records besides (never sent upstream)."""
    estimate = pricing.estimate(request)
    hit = result.cache is CacheStatus.HIT
    fields: dict[str, object] = {
        "cache": result.cache.value,
        "cache_hit": int(hit),
        "images_generated": 0 if hit else result.count,
        "credits_charged": 0.0 if hit else estimate,
        "credits_saved": estimate if hit else 0.0,
        "prompt_sha256": hashlib.sha256(request.prompt.encode()).hexdigest(),
    }
    if settings.log_prompts:
        fields["prompt"] = request.prompt[:200]
    fields |= dict(extra or {})
    if tenant:
        fields |= {"tenant_id": tenant.tenant_id, "tenant": tenant.name, "plan": tenant.plan}
    for key, value in fields.items():
        metrics.add_metadata(key=key, value=value)
    logger.info("Generation answered", extra={k: v for k, v in fields.items() if k != "prompt"})
