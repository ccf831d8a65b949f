"""The front doors' routes, as a Powertools Router that the API function's resolver includes: each parses its
request once, calls its front door (Segmind v1, v2, usage; OpenAI images and models), and answers; domain errors
are answered through the error map of the path's protocol (OpenAI's for OpenAI's paths, Segmind's otherwise). The
edge (`edge.py`) has admitted the caller before any route runs."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.router import Router

from segmind_proxy.api import docs, openai_errors, openai_images, playground, segmind_errors, segmind_v1
from segmind_proxy.api.delivery import Reply
from segmind_proxy.api.edge import TXT2IMG_PATH, V2_PATH, Admission
from segmind_proxy.api.headers import REPLAY_HEADER
from segmind_proxy.api.openai_images import (
    GENERATIONS_PATH,
    MODELS_PATH,
    model,
    models,
)
from segmind_proxy.api.proxy_events import base_url, body_of, headers_of, path_prefix, request_id, shown_path
from segmind_proxy.api.schemas import (
    Health,
    JobResultBody,
    JobStatusBody,
    JobSubmitted,
    OpenAIImageRequest,
    OpenAIModel,
    OpenAIModelList,
    UsageReport,
)
from segmind_proxy.api.segmind_v2 import handle_result, handle_status, handle_submit
from segmind_proxy.api.services import Incoming, Services
from segmind_proxy.api.synchronous import serve
from segmind_proxy.api.usage import handle_usage
from segmind_proxy.domain.catalog import Catalog, bundled_catalog
from segmind_proxy.domain.errors import DomainError, MethodNotAllowed, NotCached, Outage, Unavailable
from segmind_proxy.domain.tenants import Tenant
from segmind_proxy.domain.usage import Caller
from segmind_proxy.observability import MetricUnit, logger, metrics, tracer

router = Router()
# Powertools' rules of Segmind's generation routes (API Gateway's resources are TXT2IMG_PATH and V2_PATH).
TXT2IMG_RULE, V2_RULE = (path.replace("{model}", "<model>") for path in (TXT2IMG_PATH, V2_PATH))
# The methods each route serves, by API Gateway's resource path (`{name}` parameters): another method on one of these
# resources is a 405 naming them (`Allow`), not a 404.
SERVED: dict[str, set[str]] = {}


def served(method: str, rule: str, **documented: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`router.route`, recording which method the route's resource serves."""
    SERVED.setdefault(re.sub(r"<(\w+)>", r"{\1}", rule), set()).add(method)
    return router.route(rule, method, **documented)


def _services() -> Services:
    return router.context["services"]


def _admission() -> Admission:
    return router.context["admission"]


def _request_id() -> str:
    return request_id(router.current_event.raw_event) or router.lambda_context.aws_request_id


def _caller() -> Caller:
    return _admission().caller


def _tenant() -> Tenant | None:
    return _caller().tenant


def _namespace() -> str:
    return _caller().namespace


def _incoming(model: str = "") -> Incoming:
    """The request as the routes read it (`model`: the one a Segmind route's path names): the deadline is the
    invocation's end less the margin kept for answering."""
    event = router.current_event.raw_event
    remaining_s = router.lambda_context.get_remaining_time_in_millis() / 1000
    admission = _admission()
    return Incoming(
        body=body_of(event),
        headers=headers_of(event),
        request_id=_request_id(),
        deadline=time.monotonic() + remaining_s - _services().settings.deadline_margin_seconds,
        context=router.lambda_context,
        prefetched=admission.prefetched,
        base_url=base_url(event),
        parsed=admission.parsed,
        model=model,
    )


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(
        status_code=status,
        content_type="application/json",
        body=json.dumps(body),
        headers=headers or {},
    )


@served(
    "POST",
    TXT2IMG_RULE,
    summary="Generate images (Segmind v1 protocol)",
    description="Validates, answers from the tenant's cache when it can, otherwise calls Segmind with the operator's key.",
    responses=docs.TXT2IMG_RESPONSES,
    security=docs.SECURITY,
    tags=["Generation"],
)
@tracer.capture_method(capture_response=False)
def txt2img(model: str) -> Any:  # the raw body is parsed by v1's door, so errors keep Segmind's shape
    _model_route(TXT2IMG_PATH, model)
    return _reply(serve(segmind_v1.DOOR, _incoming(model), _caller(), _services()))


def _model_route(resource: str, model: str) -> None:
    """Powertools matches `/v1/<model>` by the path alone; API Gateway picks the resource first. So the route runs
    only for its own resource (`POST /v1/usage` reaches the function through /v1/usage's ANY method, and is a 405
    there), and a path of OpenAI's API that no route serves (`/v1/embeddings`) is answered as one."""
    event = router.current_event
    if event.resource != resource:
        raise NotFoundError
    if _services().catalog.find(model) is None and openai_errors.speaks_openai(event.path):
        raise NotFoundError


def _reply(reply: Reply) -> Response:
    return Response(
        status_code=reply.status,
        content_type=reply.content_type,
        body=reply.body,
        headers=reply.headers,
    )


@served(
    "POST",
    GENERATIONS_PATH,
    summary="Generate images (OpenAI Images API)",
    description=(
        "OpenAI's `images.generate` over the same flow as Segmind v1 (tenant cache, coalescing, budgets, "
        "Idempotency-Key). Without `seed`, every call makes a fresh image; with one, the answer is cached. Errors "
        "are OpenAI-shaped and name the parameter at fault."
    ),
    responses=docs.OPENAI_IMAGES_RESPONSES,
    security=docs.BEARER_SECURITY,
    tags=["OpenAI"],
)
@tracer.capture_method(capture_response=False)
def openai_generations() -> Any:  # the raw body is translated by OpenAI's door, so errors are OpenAI's
    return _reply(serve(openai_images.DOOR, _incoming(), _caller(), _services()))


@served(
    "GET",
    MODELS_PATH,
    summary="The models this gateway serves (OpenAI's list shape)",
    responses={
        200: {"description": "One model", "content": {"application/json": {"model": OpenAIModelList}}},
        **docs.OPENAI_GATEWAY_RESPONSES,
    },
    security=docs.BEARER_SECURITY,
    tags=["OpenAI"],
)
def openai_models() -> Response[OpenAIModelList]:
    return _json(200, models(_services().catalog, _tenant()))


@served(
    "GET",
    f"{MODELS_PATH}/<model_id>",
    summary="One model (OpenAI's model object); Segmind's slug is an alias",
    responses={
        200: {"description": "The model", "content": {"application/json": {"model": OpenAIModel}}},
        404: docs.openai_error("No such model (code model_not_found)"),
        **docs.OPENAI_GATEWAY_RESPONSES,
    },
    security=docs.BEARER_SECURITY,
    tags=["OpenAI"],
)
def openai_model(model_id: str) -> Response[OpenAIModel]:
    return _json(200, model(model_id, _services().catalog, _tenant()))


@served(
    "POST",
    V2_RULE,
    summary="Submit an async generation (Segmind v2 protocol)",
    description=(
        "Validates like v1 and answers at once with `request_id` and absolute `poll_url`, `status_url` and "
        "`response_url`. A cache hit completes the job at once. Optional `x-webhook-url` (https) is called, "
        "signed, when the job ends."
    ),
    responses={
        200: {"description": "Job accepted", "content": {"application/json": {"model": JobSubmitted}}},
        **{code: docs.TXT2IMG_RESPONSES[code] for code in (400, 401, 402, 403, 409, 413, 415, 422, 429)},
        404: docs.error("Async (v2) generation is not enabled on this gateway"),
        503: docs.error("The usage ledger, the job store or the job queue is unavailable (nothing was charged)"),
        504: docs.error(docs.ONLY_IF_CACHED_MISS),
    },
    security=docs.SECURITY,
    tags=["Generation"],
)
def submit_v2(model: str) -> Response[JobSubmitted]:
    _model_route(V2_PATH, model)
    submitted, replayed = handle_submit(_incoming(model), _caller(), _services())
    body = JobSubmitted.model_validate(submitted).model_dump()
    return _json(200, body, {REPLAY_HEADER: "true"} if replayed else None)


JOB_STORE_DOWN = "The tenant registry or the job store is unavailable; retry shortly"


@served(
    "GET",
    "/v2/requests/<request_id>/status",
    summary="Status of an async generation",
    responses={
        200: {
            "description": "QUEUED, PROCESSING or COMPLETED",
            "content": {"application/json": {"model": JobStatusBody}},
        },
        404: docs.error("No such request (or another tenant's)"),
        422: {"description": "FAILED, with `error`", "content": {"application/json": {"model": JobStatusBody}}},
        503: docs.error(JOB_STORE_DOWN),
        **docs.GATEWAY_RESPONSES,
    },
    security=docs.SECURITY,
    tags=["Generation"],
)
def job_status(request_id: str) -> Response[JobStatusBody]:
    status, body = handle_status(request_id, _namespace(), _services())
    return _json(status, body)


@served(
    "GET",
    "/v2/requests/<request_id>",
    summary="Result of an async generation: `output` holds presigned image URL(s)",
    responses={
        200: {
            "description": "The job, with output once COMPLETED",
            "content": {"application/json": {"model": JobResultBody}},
        },
        404: docs.error("No such request (or another tenant's)"),
        410: docs.error("COMPLETED, but its images have expired from storage"),
        422: {"description": "FAILED, with `error`", "content": {"application/json": {"model": JobResultBody}}},
        503: docs.error(JOB_STORE_DOWN),
        **docs.GATEWAY_RESPONSES,
    },
    security=docs.SECURITY,
    tags=["Generation"],
)
def job_result(request_id: str) -> Response[JobResultBody]:
    status, body = handle_result(request_id, _namespace(), _services())
    return _json(status, body)


@served(
    "GET",
    "/v1/usage",
    summary="Your usage this month and what remains of your budget",
    description="Figures of the calling tenant only (identified by its API key). `?month=YYYY-MM` for another month.",
    responses={
        200: {"description": "Usage", "content": {"application/json": {"model": UsageReport}}},
        400: docs.error("'month' is not YYYY-MM, or a query parameter other than 'month' was given"),
        404: docs.error("Usage metering is not enabled on this gateway"),
        503: docs.error("The tenant registry or the usage ledger is unavailable; retry shortly"),
        **docs.GATEWAY_RESPONSES,
    },
    security=docs.SECURITY,
    tags=["Usage"],
)
def usage() -> UsageReport:
    return handle_usage(_tenant(), router.current_event.query_string_parameters, _services().ledger)


@served("GET", "/v1/health", summary="Liveness (no key needed)", tags=["Operations"])
def health() -> Health:
    return Health(status="ok")


@served("GET", "/openapi.json", summary="This API's OpenAPI spec", tags=["Operations"], include_in_schema=False)
def openapi_json() -> Response[str]:
    return Response(200, "application/json", openapi_spec(catalog=_services().catalog))


@served("GET", "/docs", summary="Swagger UI", tags=["Operations"], include_in_schema=False)
def swagger_ui() -> Response[str]:
    spec = openapi_spec(base_url(router.current_event.raw_event), _services().catalog)
    return Response(200, "text/html", docs.swagger_html(spec))


@served("GET", "/", summary="Links to the playground and Swagger UI", tags=["Operations"], include_in_schema=False)
def landing() -> Response[str]:
    page = playground.landing(path_prefix(router.current_event.raw_event))
    return Response(200, "text/html; charset=utf-8", page, headers=playground.SECURITY_HEADERS)


@served("GET", playground.PAGE_PATH, summary="The playground", tags=["Operations"], include_in_schema=False)
def playground_page() -> Response[str]:
    return Response(200, "text/html; charset=utf-8", playground.page(), headers=playground.SECURITY_HEADERS)


@served("GET", f"{playground.PAGE_PATH}/<name>", summary="The playground's files", include_in_schema=False)
def playground_file(name: str) -> Response[str]:
    found = playground.asset(name, _services().catalog)
    if found is None:
        raise NotFoundError
    content_type, text = found
    return Response(200, content_type, text, headers=playground.SECURITY_HEADERS)


def openapi_spec(server: str = "/", catalog: Catalog | None = None) -> str:
    """The spec Powertools generates from these routes, plus what it cannot see: the POST bodies, headers and query
    parameters, which the handlers read themselves (for Segmind-style errors naming every bad field); and Segmind's
    routes once per catalog model, each with its own request schema."""
    models = list(catalog or bundled_catalog())
    assert router.api_resolver is not None, "the router is included in the function's resolver"
    spec = json.loads(router.api_resolver.get_openapi_json_schema(servers=[], **docs.openapi_settings()))
    spec = docs.with_parameters(
        spec,
        {
            ("post", TXT2IMG_PATH): [docs.CACHE_CONTROL, docs.RESPONSE_MODE, docs.IDEMPOTENCY_KEY],
            ("post", V2_PATH): [docs.CACHE_CONTROL, docs.IDEMPOTENCY_KEY, docs.WEBHOOK_URL],
            ("get", "/v1/usage"): [docs.MONTH],
            ("post", GENERATIONS_PATH): [docs.CACHE_CONTROL, docs.IDEMPOTENCY_KEY],
        },
    )
    spec = docs.with_request_bodies(
        spec, (GENERATIONS_PATH,), OpenAIImageRequest, server, "OpenAI's images fields, and Segmind's extensions"
    )
    spec = docs.with_openai_requests(spec, models)
    return json.dumps(docs.with_model_paths(spec, (TXT2IMG_PATH, V2_PATH), models))


@router.exception_handler(DomainError)
def domain_error(error: DomainError) -> Response:
    answer = _error_map().answer(error)
    if isinstance(error, NotCached):  # the answer asked for, not a failure: counted apart, so the 5xx alarm skips it
        metrics.add_metric(name="OnlyIfCachedMisses", unit=MetricUnit.Count, value=1)
        logger.info("Not cached (only-if-cached)", extra={"status": answer.status})
    elif answer.status >= 500:
        logger.error("Request failed", extra={"status": answer.status, "kind": error.kind, "reason": error.message})
    else:
        logger.info("Request refused", extra={"status": answer.status, "kind": error.kind, "reason": error.message})
    return _json(answer.status, answer.body, answer.headers)


@router.exception_handler(Outage)
def outage(error: Outage) -> Response:
    """An outage no flow turned into an answer of its own (a job's status while the job store is down, the usage
    while the ledger is): nothing was done, so the request can simply be retried."""
    return domain_error(
        Unavailable(error.dependency, f"The gateway's {error.dependency.described} is unavailable; retry shortly")
    )


@router.exception_handler(NotFoundError)  # what the resolver's `not_found` registers
def not_found(_: NotFoundError) -> Response:
    event = router.current_event
    allowed = SERVED.get(event.resource)
    if event.resource in (TXT2IMG_PATH, V2_PATH) and _services().catalog.find(_model_of(event)) is None:
        allowed = None  # no such model: no route, whatever the method
    if allowed and event.http_method not in allowed:  # API Gateway passes these on by the resource's ANY method
        methods = tuple(sorted(allowed))
        refused = f"{event.http_method} is not allowed on {event.path}: it takes {' or '.join(methods)}"
        return domain_error(MethodNotAllowed(refused, allowed=methods))
    if openai_errors.speaks_openai(event.path):
        answer = openai_errors.not_found(event.http_method, event.path)
        return _json(answer.status, answer.body)
    return _json(404, {"error": f"No route for {event.http_method} {shown_path(event.path)}: see /docs for the routes"})


def _model_of(event: Any) -> str:
    return (event.path_parameters or {}).get("model", "")


@router.exception_handler(Exception)
def unexpected_error(_: Exception) -> Response:
    logger.exception("Unhandled error")
    if openai_errors.speaks_openai(router.current_event.path):
        answer = openai_errors.internal_error()
        return _json(answer.status, answer.body)
    return _json(500, {"error": "Internal gateway error"})


def _error_map() -> Any:
    """The error map of the request's protocol: OpenAI's on its paths, Segmind's everywhere else."""
    return openai_errors if openai_errors.speaks_openai(router.current_event.path) else segmind_errors
