"""`Idempotency-Key` on the POST routes, with Powertools Idempotency (DynamoDB persistence in JobsTable).

The key is scoped to the tenant and the route; the record holds a small outcome (where the images are, or the job),
never the images, and the body's SHA-256 so reusing a key with a different body is refused."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyPersistenceLayerError,
    IdempotencyValidationError,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from segmind_proxy.adapters.aws_clients import dynamodb_client
from segmind_proxy.domain.errors import Dependency, IdempotencyInProgress, IdempotencyKeyReused, Outage
from segmind_proxy.observability import logger
from segmind_proxy.settings import get_settings


@cache
def _persistence() -> DynamoDBPersistenceLayer:
    # Over the container's own client: Powertools' default would build a second boto3 session.
    return DynamoDBPersistenceLayer(
        table_name=get_settings().jobs_table, key_attr="pk", expiry_attr="expires_at", boto3_client=dynamodb_client()
    )


@cache
def _config() -> IdempotencyConfig:
    return IdempotencyConfig(
        event_key_jmespath="[namespace, route, key]",
        payload_validation_jmespath="body_sha256",
        expires_after_seconds=get_settings().job_retention_hours * 3600,
    )


class PowertoolsIdempotency:
    """The Idempotency port over Powertools Idempotency, its records in JobsTable."""

    def run_once(
        self,
        key: str,
        scope: tuple[str, str],
        body: bytes | None,
        produce: Callable[[], dict[str, Any]],
        context: LambdaContext | None,
    ) -> tuple[dict[str, Any], bool]:
        """`produce()`'s outcome, computed once per (tenant, route, key) for the retention period.
        `scope`: (namespace, route). Returns (outcome, replayed)."""
        produced: list[dict[str, Any]] = []
        failed: list[Exception] = []

        def once(identity: dict[str, Any]) -> dict[str, Any]:
            try:
                produced.append(produce())
            except Exception as error:
                failed.append(error)
                raise
            return produced[0]

        config = _config()
        if context is not None:
            config.register_lambda_context(context)
        guarded = idempotent_function(
            once,
            data_keyword_argument="identity",
            persistence_store=_persistence(),
            config=config,
            key_prefix="IDEMPOTENCY",
        )
        identity = {
            "namespace": scope[0],
            "route": scope[1],
            "key": key,
            "body_sha256": hashlib.sha256(body or b"").hexdigest(),
        }
        try:
            outcome = guarded(identity=identity)
        except IdempotencyValidationError:
            raise IdempotencyKeyReused("This Idempotency-Key was used with a different request body") from None
        except IdempotencyAlreadyInProgressError:
            raise IdempotencyInProgress(
                "A request with this Idempotency-Key is still in progress; retry shortly", retry_after=2
            ) from None
        except IdempotencyPersistenceLayerError as error:
            return _despite_the_store(error, produced, failed), False
        return outcome, not (produced or failed)


def _despite_the_store(
    error: IdempotencyPersistenceLayerError, produced: list[dict[str, Any]], failed: list[Exception]
) -> dict[str, Any]:
    """Powertools could not read or write the key's record. The request's own failure is what the client hears; an
    outcome produced (paid images) is answered unrecorded, and a retry runs afresh once the in-progress record
    expires; before anything ran, nothing was done and the store's outage is the answer."""
    if failed:
        raise failed[0]
    if produced:
        logger.warning("Could not record an Idempotency-Key's outcome; answering it unrecorded", exc_info=error)
        return produced[0]
    raise Outage(Dependency.JOB_STORE) from error
