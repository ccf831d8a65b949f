"""API Lambda: wires API Gateway routes to the domain code in the `segmind_proxy` layer."""

import base64
import json
import time
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, CORSConfig, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.params import Body
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from segmind_proxy import api_docs
from segmind_proxy.catalog import sd35_turbo
from segmind_proxy.dependencies import generation_service
from segmind_proxy.errors import GatewayError
from segmind_proxy.models import Txt2ImgRequest
from segmind_proxy.observability import logger, metrics, tracer
from segmind_proxy.schemas import Health
from segmind_proxy.settings import get_settings
from segmind_proxy.txt2img import handle_txt2img

EXPOSED_HEADERS = ["x-cache", "x-request-id", "x-seed-value", "x-response-mode", "Retry-After"]
_origins = get_settings().cors_allowed_origins or ["*"]
cors = CORSConfig(
    allow_origin=_origins[0],
    extra_origins=_origins[1:],
    allow_headers=["Cache-Control", "x-response-mode"],
    expose_headers=EXPOSED_HEADERS,
    max_age=600,
)
# Validation stays ours (Segmind-style errors naming every field); Powertools generates the OpenAPI spec.
app = APIGatewayRestResolver(cors=cors, enable_validation=False)
OPENAPI = {
    "title": api_docs.TITLE,
    "version": api_docs.VERSION,
    "description": api_docs.DESCRIPTION,
    "security_schemes": api_docs.SECURITY_SCHEMES,
}
app.enable_swagger(path="/docs", **OPENAPI)


def _request_id() -> str:
    return app.current_event.request_context.request_id or app.lambda_context.aws_request_id


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(
        status_code=status,
        content_type="application/json",
        body=json.dumps(body),
        headers={"x-request-id": _request_id(), **(headers or {})},
    )


@app.post(
    f"/v1/{sd35_turbo().slug}",
    summary="Generate images (Segmind v1 protocol)",
    description="Validates, answers from the tenant's cache when it can, otherwise calls Segmind with the operator's key.",
    responses=api_docs.TXT2IMG_RESPONSES,
    security=api_docs.SECURITY,
    tags=["Generation"],
)
@tracer.capture_method(capture_response=False)
def txt2img(
    # Documentation only: the raw body is parsed by `handle_txt2img`, so errors keep Segmind's shape.
    body: Annotated[Txt2ImgRequest, Body(description="Segmind's request fields")] = None,
) -> Any:
    event = app.current_event
    settings = get_settings()
    raw = event.body
    data = base64.b64decode(raw) if raw is not None and event.is_base64_encoded else (raw.encode() if raw else None)
    remaining_s = app.lambda_context.get_remaining_time_in_millis() / 1000
    reply = handle_txt2img(
        body=data,
        headers={k.lower(): v for k, v in (event.headers or {}).items()},
        api_key_id=event.request_context.identity.api_key_id,
        request_id=_request_id(),
        deadline=time.monotonic() + remaining_s - settings.deadline_margin_seconds,
        service=generation_service(),
        settings=settings,
    )
    return Response(
        status_code=reply.status,
        content_type=reply.content_type,
        body=reply.body,
        headers={"x-request-id": _request_id(), **reply.headers},
    )


@app.get("/v1/health", summary="Liveness (no key needed)", tags=["Operations"])
def health() -> Health:
    return Health(status="ok")


@app.get("/openapi.json", summary="This API's OpenAPI spec", tags=["Operations"], include_in_schema=False)
def openapi_json() -> Response[str]:
    return Response(200, "application/json", openapi_spec())


def openapi_spec() -> str:
    return app.get_openapi_json_schema(**OPENAPI)


@app.exception_handler(GatewayError)
def gateway_error(error: GatewayError) -> Response:
    if error.status >= 500:
        logger.error("Request failed", extra={"status": error.status, "kind": error.kind, "reason": error.message})
    else:
        logger.info("Request refused", extra={"status": error.status, "kind": error.kind, "reason": error.message})
    return _json(error.status, error.body(), error.headers)


@app.not_found
def not_found(_: NotFoundError) -> Response:
    event = app.current_event
    return _json(404, {"error": f"No route for {event.http_method} {event.path}"})


@app.exception_handler(Exception)
def unexpected_error(_: Exception) -> Response:
    logger.exception("Unhandled error")
    return _json(500, {"error": "Internal gateway error"})


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
