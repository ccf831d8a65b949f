"""The one synchronous path of the front doors that answer with the images (Segmind v1, OpenAI's): check the
model, scope and plan the request, generate or serve it (once per Idempotency-Key), refund what fails to reach the
client, deliver it (whole or as URLs) and answer. A door brings only its translation of the request into an `Order`
and the shape of its answer (`Door`); nothing else differs between doors."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass

from segmind_proxy.api.delivery import Delivery, Order, Reply, ResponseMode, deliver
from segmind_proxy.api.headers import REPLAY_HEADER, idempotency_key
from segmind_proxy.api.services import Incoming, Services
from segmind_proxy.domain import pricing
from segmind_proxy.domain.cache_policy import CachePolicy, CacheStatus
from segmind_proxy.domain.images import ImageResult
from segmind_proxy.domain.request import Txt2ImgRequest
from segmind_proxy.domain.tenants import Tenant
from segmind_proxy.domain.usage import Caller
from segmind_proxy.flows.access import check_model
from segmind_proxy.flows.billing import TenantBilling, billing_for, counting_rejections, request_hold
from segmind_proxy.flows.idempotent import Keyed
from segmind_proxy.flows.scope import InlineAnswer, Plan, RequestScope
from segmind_proxy.observability import logger, metrics
from segmind_proxy.settings import Settings


@dataclass(frozen=True)
class Door:
    """What a front door brings to the path: its protocol's request as an `Order` (every check that needs no I/O,
    so a bad request costs nothing), and its answer's shape."""

    translate: Callable[[Incoming, Services], Order]
    shape: Callable[[Delivery, Order], Reply]


def serve(door: Door, incoming: Incoming, caller: Caller, services: Services) -> Reply:
    """Validate, generate or serve (once per Idempotency-Key), and answer; a refusal is counted for the tenant."""
    with counting_rejections(caller.tenant, services.ledger, services.later):
        order = incoming.parsed or door.translate(incoming, services)  # translated at the edge, or now
        key = idempotency_key(incoming.headers) if services.once else None
    request = order.request
    admit(request, caller, incoming, services)
    scope = request_scope(request, caller, incoming, services)
    plan = plan_for(order, incoming.headers, services.settings, idempotent=key is not None)
    keyed = Keyed(key, order.route, incoming.body, incoming.context) if key is not None else None
    try:
        result, replayed = generate_or_replay(request, scope, plan, keyed, services)
        if not replayed:
            report(request, result, caller.tenant, services.settings, order.recorded)
        reply = door.shape(deliver(result, order, scope.namespace, incoming.request_id, services), order)
    except BaseException:
        scope.billing.refund()  # paid images that reach the client neither now nor by a replay are not charged
        raise
    return answered(reply, scope, replayed=replayed)


def admit(request: Txt2ImgRequest, caller: Caller, incoming: Incoming, services: Services) -> None:
    """What every door checks of a valid request before any work: the tenant may use the model, and its prompts pass
    the tenant's content policy (a refusal is counted, never charged)."""
    check_model(caller.tenant, request.model)
    if services.screening is not None:
        with counting_rejections(caller.tenant, services.ledger, services.later):
            services.screening.check(request, caller.tenant, incoming.deadline)


def start_cache_read(
    order: Order, headers: Mapping[str, str], namespace: str, services: Services
) -> Future[ImageResult | None] | None:
    """The cache read of a request that will make one (a fixed seed, no `no-cache`), started now; else None."""
    if not CachePolicy.from_header(headers.get("cache-control")).reads(order.request):
        return None
    return services.generation.prefetch(order.request, namespace, by_url=order.mode is ResponseMode.URL)


def request_scope(request: Txt2ImgRequest, caller: Caller, incoming: Incoming, services: Services) -> RequestScope:
    """A synchronous request's scope: its reservation is its own until its invocation has surely ended."""
    settings = services.settings
    hold = request_hold(
        incoming.request_id, incoming.deadline, settings.deadline_margin_seconds, settings.reservation_grace_seconds
    )
    billing = billing_for(request, caller, services.ledger, hold)
    return RequestScope(caller, incoming.request_id, incoming.deadline, billing, incoming.prefetched)


def plan_for(order: Order, headers: Mapping[str, str], settings: Settings, *, idempotent: bool) -> Plan:
    """An answer that carries the images whole need not wait for them to be cached (see `after_response`); a
    replay must find them stored."""
    inline = order.mode is ResponseMode.INLINE and not idempotent and settings.store_after_answer
    return Plan(
        CachePolicy.from_header(headers.get("cache-control")),
        by_url=order.mode is ResponseMode.URL,
        must_store=idempotent,
        inline=InlineAnswer(order.as_base64, settings.inline_response_max_bytes) if inline else None,
    )


def generate_or_replay(
    request: Txt2ImgRequest, scope: RequestScope, plan: Plan, keyed: Keyed | None, services: Services
) -> tuple[ImageResult, bool]:
    """The images, generated or served (once per Idempotency-Key when `keyed`), and whether they are a replay. A
    402 (over budget) is refused before any cost, and counted, as a 400 is."""
    with counting_rejections(scope.caller.tenant, services.ledger, services.later):
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
