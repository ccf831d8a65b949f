"""The txt2img endpoint, HTTP-shaped but free of any web framework: checks, then generate, then deliver."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from concurrent.futures import Future
from functools import partial
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from segmind_proxy.adapters.idempotency import idempotency_key, run_once
from segmind_proxy.api.delivery import Reply, ResponseMode, deliver, fits_inline, undeliverable
from segmind_proxy.domain.cache_policy import CachePolicy, CacheStatus
from segmind_proxy.domain.errors import (
    BodyTooLarge,
    Expired,
    RequestInvalid,
    UnsupportedEncoding,
    UnsupportedMediaType,
)
from segmind_proxy.domain.images import ImageResult, result_of, stored_set
from segmind_proxy.domain.ports import UsageLedger
from segmind_proxy.domain.request import Txt2ImgRequest, parse_request
from segmind_proxy.domain.tenants import Tenant
from segmind_proxy.domain.usage import Usage
from segmind_proxy.flows.billing import (
    TenantBilling,
    billing_for,
    counting_rejections,
    request_hold,
)
from segmind_proxy.flows.generate import GenerationService
from segmind_proxy.observability import logger, metrics
from segmind_proxy.settings import Settings

RESPONSE_MODE_HEADER = "x-response-mode"
# An idempotency outcome whose images were answered inline but not stored.
NOT_KEPT = "not_kept"


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


def validate(body: bytes | None, headers: Mapping[str, str], settings: Settings) -> tuple[Txt2ImgRequest, ResponseMode]:
    """Every check that needs no I/O, so a bad request costs nothing."""
    if body is not None and len(body) > settings.max_body_bytes:
        raise BodyTooLarge(f"Request body is larger than {settings.max_body_bytes} bytes")
    check_content_type(headers.get("content-type"))
    check_content_encoding(headers.get("content-encoding"))
    mode = response_mode(headers)
    request = parse_request(body)
    if not request.base64 and request.batch_size > 1:
        mode = ResponseMode.URL  # a raw answer carries one image: a batch comes back as URLs, none lost
    return request, mode


def prefetch_cache_read(
    body: bytes | None,
    headers: Mapping[str, str],
    namespace: str,
    service: GenerationService,
    settings: Settings,
    *,
    v2: bool = False,
) -> Future[ImageResult | None] | None:
    """Start the cache read of a request that will make one, so it overlaps the tenant check; None for a request
    that would not read the cache (invalid, random seed, `no-cache`). Its answer is used only once authorized.
    A v2 submit only ever checks that the images exist (its result is URLs)."""
    try:
        request, mode = validate(body, headers, settings)
    except RequestInvalid:
        return None
    if not CachePolicy.from_header(headers.get("cache-control")).reads(request):
        return None
    return service.prefetch(request, namespace, by_url=v2 or mode is ResponseMode.URL)


def handle_txt2img(
    *,
    body: bytes | None,
    headers: Mapping[str, str],
    api_key_id: str | None,
    request_id: str,
    deadline: float,
    service: GenerationService,
    settings: Settings,
    tenant: Tenant | None = None,
    meter: UsageLedger | None = None,
    context: LambdaContext | None = None,
    prefetched: Future[ImageResult | None] | None = None,
    usage: Usage | None = None,
) -> Reply:
    """`headers` must be case-insensitive (lower-cased keys). With a tenant and a meter, the request is billed.
    `prefetched`: this request's cache read, started by `prefetch_cache_read` in the same namespace.
    `usage`: the tenant's figures this month, read with its profile (a hit can then be counted after the answer)."""
    with counting_rejections(tenant, meter, service.later):
        request, mode = validate(body, headers, settings)
        key = idempotency_key(headers) if settings.jobs_table else None
    estimate, billing, namespace = billing_for(
        request, tenant, meter, api_key_id, usage, request_hold(request_id, deadline, settings)
    )
    # An answer that carries the images whole need not wait for them to be cached (see `after_response`).
    store_later = (
        partial(fits_inline, as_base64=request.base64, limit=settings.inline_response_max_bytes)
        if mode is ResponseMode.INLINE and key is None and settings.store_after_answer
        else None
    )

    def generate() -> ImageResult:
        return service.generate(
            request,
            namespace=namespace,
            policy=CachePolicy.from_header(headers.get("cache-control")),
            by_url=mode is ResponseMode.URL,
            deadline=deadline,
            billing=billing,
            owner=request_id,
            must_store=key is not None,  # a replay must find the images
            prefetched=prefetched,
            store_later=store_later,
        )

    def produce() -> dict[str, Any]:
        first.append(generate())
        if first[0].stored is not None:
            return result_of(first[0])
        if not fits_inline(first[0], request.base64, settings.inline_response_max_bytes):
            raise undeliverable()  # not remembered: a retry with the key runs afresh
        # Storage failed, but this answer carries the images; a replay can only be told they were not kept.
        return {NOT_KEPT: True}

    first: list[ImageResult] = []
    replayed = False
    try:
        # A 402 (over budget) is refused before any cost, as a 400 is.
        with counting_rejections(tenant, meter, service.later):
            if key is None:
                result = generate()
            else:
                outcome, replayed = run_once(
                    key=key, namespace=namespace, route="v1", body=body, produce=produce, context=context
                )
                result = first[0] if first else _replay(outcome, service, by_url=mode is ResponseMode.URL)
        if not replayed:
            _report(request, result, tenant, estimate, settings)
        reply = deliver(
            result,
            as_base64=request.base64,
            mode=mode,
            service=service,
            namespace=namespace,
            request_id=request_id,
            url_ttl=settings.presigned_url_ttl_seconds,
            inline_limit=settings.inline_response_max_bytes,
        )
    except BaseException:
        billing.refund()  # paid images that reach the client neither now nor by a replay are not charged
        raise
    if replayed:
        reply.headers["x-idempotent-replay"] = "true"
    if isinstance(billing, TenantBilling):
        reply.headers.update(budget_headers(billing.remaining()))
    return reply


def _replay(outcome: dict[str, Any], service: GenerationService, *, by_url: bool) -> ImageResult:
    """The first answer's images, from S3: no upstream call, no charge."""
    if outcome.get(NOT_KEPT):
        raise Expired(
            "The images of this Idempotency-Key were delivered but could not be kept for replays (storage was "
            "unavailable); send a new key to generate again"
        )
    stored = stored_set(outcome)
    images = None
    if not by_url:
        read = service.store.read(stored)
        if read is None:
            raise Expired("The images of this Idempotency-Key have expired from storage")
        images = read[0]
    return ImageResult(
        image_format=outcome.get("format", outcome["image_format"]),
        content_type=outcome["content_type"],
        seed=outcome.get("seed"),
        cache=CacheStatus(outcome.get("cache", "MISS")),
        count=int(outcome["count"]),
        images=images,
        stored=stored,
        asked=int(outcome.get("asked", outcome["count"])),
    )


def budget_headers(remaining: Mapping[str, float | int | None]) -> dict[str, str]:
    return {f"x-budget-remaining-{unit}": str(value) for unit, value in remaining.items() if value is not None}


def _report(
    request: Txt2ImgRequest, result: ImageResult, tenant: Tenant | None, estimate: float, settings: Settings
) -> None:
    """Per-request figures as EMF metadata (searchable in Logs Insights, free of metric-dimension cost)."""
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
    if tenant:
        fields |= {"tenant_id": tenant.tenant_id, "tenant": tenant.name, "plan": tenant.plan}
    for key, value in fields.items():
        metrics.add_metadata(key=key, value=value)
    logger.info("Generation answered", extra={k: v for k, v in fields.items() if k != "prompt"})
