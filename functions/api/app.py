"""API Lambda: API Gateway's REST proxy events to the Segmind front doors (`segmind_proxy.api`), with what the
composition root builds once per container."""

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from snapshot_restore_py import register_after_restore, register_before_snapshot

from segmind_proxy.api import routes, schemas
from segmind_proxy.api.edge import admit, cors_config, identified, refusal
from segmind_proxy.composition import AFTER_RESPONSE, after_restore, before_snapshot, catalog, services
from segmind_proxy.domain.errors import AccessRefused, Unavailable
from segmind_proxy.observability import logger, metrics, tracer
from segmind_proxy.settings import get_settings

_settings = get_settings()
# Registering the extension is only possible while the container initialises, which is now.
if _settings.store_after_answer and _settings.lambda_runtime_api:
    AFTER_RESPONSE.start(_settings.lambda_runtime_api)
cors = cors_config(_settings)
# Validation stays ours (Segmind-style errors naming every field); Powertools generates the OpenAPI spec.
app = APIGatewayRestResolver(cors=cors, enable_validation=False)
app.include_router(routes.router)
# SnapStart's runtime hooks (docs/operations.md, "SnapStart"); Lambda runs them only for a version published with it on. The
# body models are built on first use otherwise, so the snapshot builds them.
register_before_snapshot(before_snapshot, services, schemas.build_all)
register_after_restore(after_restore)


@AFTER_RESPONSE.holding
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, log_event=False, clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return identified(answer(event, context), event, context)


def answer(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    wired = services()
    try:
        admission = admit(event, wired)
    except (AccessRefused, Unavailable) as refused:
        return refusal(event, refused, cors)
    if admission.caller.tenant is not None:
        logger.append_keys(tenant_id=admission.caller.tenant.tenant_id)
    app.append_context(services=wired, admission=admission)
    return admission.answered(app.resolve(event, context))


def openapi_spec(server: str = "/") -> str:
    return routes.openapi_spec(server, catalog())
