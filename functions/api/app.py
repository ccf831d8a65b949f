"""API Lambda: wires API Gateway routes to the domain code in the `segmind_proxy` layer."""

import base64
import json
import time
from concurrent.futures import Future
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, CORSConfig, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from segmind_proxy.adapters.after_response import AFTER_RESPONSE
from segmind_proxy.api import docs as api_docs
from segmind_proxy.api import segmind_errors
from segmind_proxy.api.schemas import Health, JobResultBody, JobStatusBody, JobSubmitted, UsageReport
from segmind_proxy.api.segmind_v1 import handle_txt2img, prefetch_cache_read
from segmind_proxy.api.segmind_v2 import handle_result, handle_status, handle_submit
from segmind_proxy.api.services import Incoming
from segmind_proxy.api.usage import handle_usage
from segmind_proxy.composition import meter, services, tenant_registry
from segmind_proxy.domain.catalog import sd35_turbo
from segmind_proxy.domain.errors import AccessRefused, Dependency, DomainError, NotCached, Outage, Unavailable
from segmind_proxy.domain.request import Txt2ImgRequest
from segmind_proxy.domain.tenants import Tenant
from segmind_proxy.domain.usage import Caller, Usage, current_month
from segmind_proxy.flows.access import authorize, authorize_reading, known_namespace, namespace_of
from segmind_proxy.observability import MetricUnit, logger, metrics, tracer
from segmind_proxy.settings import get_settings

EXPOSED_HEADERS = [
    "x-cache",
    "x-request-id",
    "x-seed-value",
    "x-images-delivered",
    "x-response-mode",
    "x-budget-remaining-credits",
    "x-budget-remaining-images",
    "x-idempotent-replay",
    "Retry-After",
]
_settings = get_settings()
# Registering the extension is only possible while the container initialises, which is now.
if _settings.store_after_answer and _settings.lambda_runtime_api:
    AFTER_RESPONSE.start(_settings.lambda_runtime_api)
_origins = _settings.cors_allowed_origins or ["*"]
cors = CORSConfig(
    allow_origin=_origins[0],
    extra_origins=_origins[1:],
    allow_headers=["Cache-Control", "x-response-mode", "Idempotency-Key", "x-webhook-url"],
    expose_headers=EXPOSED_HEADERS,
    max_age=600,
)
# Validation stays ours (Segmind-style errors naming every field); Powertools generates the OpenAPI spec.
app = APIGatewayRestResolver(cors=cors, enable_validation=False)


TXT2IMG_PATH = f"/v1/{sd35_turbo().slug}"
V2_PATH = f"/v2/{sd35_turbo().slug}"


def _request_id() -> str:
    return app.current_event.request_context.request_id or app.lambda_context.aws_request_id


def _tenant() -> Tenant | None:
    return app.context.get("tenant")


def _caller() -> Caller:
    usage = app.context.get("usage")
    return Caller(_tenant(), _namespace(), usage)


def _incoming() -> Incoming:
    """The request as the routes read it: the deadline is the invocation's end less the margin kept for answering."""
    remaining_s = app.lambda_context.get_remaining_time_in_millis() / 1000
    prefetched = app.context.get("prefetched") or (None, None)
    return Incoming(
        body=_body(),
        headers=_headers(),
        request_id=_request_id(),
        deadline=time.monotonic() + remaining_s - get_settings().deadline_margin_seconds,
        context=app.lambda_context,
        prefetched=prefetched[1],
        base_url=_base_url(),
        parsed=prefetched[0],
    )


def _namespace() -> str:
    return namespace_of(_tenant(), app.current_event.request_context.identity.api_key_id)


def _body(event: dict[str, Any] | None = None) -> bytes | None:
    event = event if event is not None else app.current_event.raw_event
    raw = event.get("body")
    if raw is None:
        return None
    return base64.b64decode(raw) if event.get("isBase64Encoded") else raw.encode()


def _headers(event: dict[str, Any] | None = None) -> dict[str, str]:
    event = event if event is not None else app.current_event.raw_event
    return {k.lower(): v for k, v in (event.get("headers") or {}).items()}


def _base_url() -> str:
    """This API's absolute base URL as the client called it (custom domain or execute-api with stage)."""
    event = app.current_event
    context = event.request_context
    headers = _headers()
    host = headers.get("host") or context.domain_name
    proto = headers.get("x-forwarded-proto", "https")
    full_path = event.raw_event.get("requestContext", {}).get("path") or event.path
    prefix = full_path[: len(full_path) - len(event.path)] if full_path.endswith(event.path) else ""
    return f"{proto}://{host}{prefix}"


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(
        status_code=status,
        content_type="application/json",
        body=json.dumps(body),
        headers={"x-request-id": _request_id(), **(headers or {})},
    )


@app.post(
    TXT2IMG_PATH,
    summary="Generate images (Segmind v1 protocol)",
    description="Validates, answers from the tenant's cache when it can, otherwise calls Segmind with the operator's key.",
    responses=api_docs.TXT2IMG_RESPONSES,
    security=api_docs.SECURITY,
    tags=["Generation"],
)
@tracer.capture_method(capture_response=False)
def txt2img() -> Any:  # the raw body is parsed by `handle_txt2img`, so errors keep Segmind's shape
    reply = handle_txt2img(_incoming(), _caller(), services())
    return Response(
        status_code=reply.status,
        content_type=reply.content_type,
        body=reply.body,
        headers={"x-request-id": _request_id(), **reply.headers},
    )


@app.post(
    V2_PATH,
    summary="Submit an async generation (Segmind v2 protocol)",
    description=(
        "Validates like v1 and answers at once with `request_id` and absolute `poll_url`, `status_url` and "
        "`response_url`. A cache hit completes the job at once. Optional `x-webhook-url` (https) is called, "
        "signed, when the job ends."
    ),
    responses={
        200: {"description": "Job accepted", "content": {"application/json": {"model": JobSubmitted}}},
        **{code: api_docs.TXT2IMG_RESPONSES[code] for code in (400, 402, 403, 409, 413, 415, 422, 429)},
        404: api_docs.error("Async (v2) generation is not enabled on this gateway"),
        503: api_docs.error("The usage ledger, the job store or the job queue is unavailable (nothing was charged)"),
        504: api_docs.error(api_docs.ONLY_IF_CACHED_MISS),
    },
    security=api_docs.SECURITY,
    tags=["Generation"],
)
def submit_v2() -> JobSubmitted:
    return JobSubmitted.model_validate(handle_submit(_incoming(), _caller(), services()))


@app.get(
    "/v2/requests/<request_id>/status",
    summary="Status of an async generation",
    responses={
        200: {
            "description": "QUEUED, PROCESSING or COMPLETED",
            "content": {"application/json": {"model": JobStatusBody}},
        },
        404: api_docs.error("No such request (or another tenant's)"),
        422: {"description": "FAILED, with `error`", "content": {"application/json": {"model": JobStatusBody}}},
        **api_docs.GATEWAY_RESPONSES,
    },
    security=api_docs.SECURITY,
    tags=["Generation"],
)
def job_status(request_id: str) -> Response[JobStatusBody]:
    status, body = handle_status(request_id, _namespace(), services())
    return _json(status, body)


@app.get(
    "/v2/requests/<request_id>",
    summary="Result of an async generation: `output` holds presigned image URL(s)",
    responses={
        200: {
            "description": "The job, with output once COMPLETED",
            "content": {"application/json": {"model": JobResultBody}},
        },
        404: api_docs.error("No such request (or another tenant's)"),
        410: api_docs.error("COMPLETED, but its images have expired from storage"),
        422: {"description": "FAILED, with `error`", "content": {"application/json": {"model": JobResultBody}}},
        **api_docs.GATEWAY_RESPONSES,
    },
    security=api_docs.SECURITY,
    tags=["Generation"],
)
def job_result(request_id: str) -> Response[JobResultBody]:
    status, body = handle_result(request_id, _namespace(), services())
    return _json(status, body)


@app.get(
    "/v1/usage",
    summary="Your usage this month and what remains of your budget",
    description="Figures of the calling tenant only (identified by its API key). `?month=YYYY-MM` for another month.",
    responses={
        200: {"description": "Usage", "content": {"application/json": {"model": UsageReport}}},
        400: api_docs.error("'month' is not YYYY-MM, or a query parameter other than 'month' was given"),
        404: api_docs.error("Usage metering is not enabled on this gateway"),
        **api_docs.GATEWAY_RESPONSES,
    },
    security=api_docs.SECURITY,
    tags=["Usage"],
)
def usage() -> UsageReport:
    return handle_usage(_tenant(), app.current_event.query_string_parameters, services().ledger)


@app.get("/v1/health", summary="Liveness (no key needed)", tags=["Operations"])
def health() -> Health:
    return Health(status="ok")


@app.get("/openapi.json", summary="This API's OpenAPI spec", tags=["Operations"], include_in_schema=False)
def openapi_json() -> Response[str]:
    return Response(200, "application/json", openapi_spec())


@app.get("/docs", summary="Swagger UI", tags=["Operations"], include_in_schema=False)
def swagger_ui() -> Response[str]:
    return Response(200, "text/html", api_docs.swagger_html(openapi_spec(server=_base_url())))


def openapi_spec(server: str = "/") -> str:
    """The spec Powertools generates from these routes, plus what it cannot see: the POST bodies, headers and query
    parameters, which the handlers read themselves (for Segmind-style errors naming every bad field)."""
    spec = json.loads(app.get_openapi_json_schema(servers=[], **api_docs.openapi_settings()))
    spec = api_docs.with_parameters(
        spec,
        {
            ("post", TXT2IMG_PATH): [api_docs.CACHE_CONTROL, api_docs.RESPONSE_MODE, api_docs.IDEMPOTENCY_KEY],
            ("post", V2_PATH): [api_docs.CACHE_CONTROL, api_docs.IDEMPOTENCY_KEY, api_docs.WEBHOOK_URL],
            ("get", "/v1/usage"): [api_docs.MONTH],
        },
    )
    return json.dumps(api_docs.with_request_bodies(spec, (TXT2IMG_PATH, V2_PATH), Txt2ImgRequest, server))


@app.exception_handler(DomainError)
def domain_error(error: DomainError) -> Response:
    answer = segmind_errors.answer(error)
    if isinstance(error, NotCached):  # the answer asked for, not a failure: counted apart, so the 5xx alarm skips it
        metrics.add_metric(name="OnlyIfCachedMisses", unit=MetricUnit.Count, value=1)
        logger.info("Not cached (only-if-cached)", extra={"status": answer.status})
    elif answer.status >= 500:
        logger.error("Request failed", extra={"status": answer.status, "kind": error.kind, "reason": error.message})
    else:
        logger.info("Request refused", extra={"status": answer.status, "kind": error.kind, "reason": error.message})
    return _json(answer.status, answer.body, answer.headers)


@app.not_found
def not_found(_: NotFoundError) -> Response:
    event = app.current_event
    return _json(404, {"error": f"No route for {event.http_method} {event.path}"})


@app.exception_handler(Exception)
def unexpected_error(_: Exception) -> Response:
    logger.exception("Unhandled error")
    return _json(500, {"error": "Internal gateway error"})


def _refusal(event: dict[str, Any], refused: AccessRefused | Unavailable, origin: str | None) -> dict[str, Any]:
    """An answer built before routing: a refused origin gets no CORS headers, so browsers cannot read it."""
    answer = segmind_errors.answer(refused)
    headers = {
        "Content-Type": "application/json",
        "x-request-id": event.get("requestContext", {}).get("requestId") or "",
        **answer.headers,
    }
    if (not isinstance(refused, AccessRefused) or refused.cors) and origin:
        headers |= cors.to_dict(origin)
    logger.info("Request refused", extra={"status": answer.status, "reason": refused.message})
    return {
        "statusCode": answer.status,
        "headers": headers,
        "body": json.dumps(answer.body),
        "isBase64Encoded": False,
    }


@AFTER_RESPONSE.holding
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, log_event=False, clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    identity = event.get("requestContext", {}).get("identity") or {}
    headers = _headers(event)
    origin = headers.get("origin")
    prefetched = _prefetch(event, headers, identity.get("apiKeyId"))
    try:
        tenant, usage = _authorized(event, identity.get("apiKeyId"), origin, reads_cache=prefetched[1] is not None)
    except AccessRefused as refused:
        return _refusal(event, refused, origin)
    except Outage:
        logger.exception("Tenant registry unavailable")
        unavailable = Unavailable(
            Dependency.TENANT_REGISTRY, "The tenant registry is unavailable; nothing was done, retry shortly"
        )
        return _refusal(event, unavailable, origin)
    if tenant is not None:
        logger.append_keys(tenant_id=tenant.tenant_id)
    app.append_context(tenant=tenant, prefetched=prefetched, usage=usage)
    response = app.resolve(event, context)
    if tenant is not None and tenant.allowed_origins and origin:
        _reflect_origin(response, origin)
    return response


def _authorized(
    event: dict[str, Any], api_key_id: str | None, origin: str | None, *, reads_cache: bool
) -> tuple[Tenant | None, Usage | None]:
    """The tenant; and for a v1 generation that reads the cache, its month's usage, read with its profile: a hit's
    answer then has its budget figures without waiting for the hit to be counted."""
    if not reads_cache or meter() is None or event.get("resource") != TXT2IMG_PATH:
        return authorize(tenant_registry(), api_key_id, origin), None
    return authorize_reading(tenant_registry(), api_key_id, origin, current_month())


def _prefetch(event: dict[str, Any], headers: dict[str, str], api_key_id: str | None) -> tuple[Any, Future | None]:
    """A generation's body is parsed once, here, and its cache read starts now, alongside the tenant check: one
    round trip in the time of two."""
    resource = event.get("resource")
    if event.get("httpMethod") != "POST" or resource not in (TXT2IMG_PATH, V2_PATH):
        return None, None
    namespace = known_namespace(tenant_registry(), api_key_id)
    if namespace is None:
        return None, None
    return prefetch_cache_read(_body(event), headers, namespace, services(), v2=resource == V2_PATH)


def _reflect_origin(response: dict[str, Any], origin: str) -> None:
    """A browser key's answers name its (already checked) origin, never `*`."""
    multi = response.setdefault("multiValueHeaders", {})
    if any(k.lower() == "access-control-allow-origin" for k in multi):
        multi["Access-Control-Allow-Origin"] = [origin]
        multi["Vary"] = ["Origin"]
