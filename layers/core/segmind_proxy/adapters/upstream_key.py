"""The operator's Segmind key, read from Secrets Manager through Powertools Parameters with an in-memory TTL."""

from __future__ import annotations

import json
from functools import cache

from aws_lambda_powertools.utilities import parameters

from segmind_proxy.adapters.aws_clients import secrets_manager
from segmind_proxy.domain.errors import FailureKind, UpstreamFailure
from segmind_proxy.settings import get_settings

PLACEHOLDER = "REPLACE_WITH_YOUR_SEGMIND_API_KEY"

_NOT_CONFIGURED = "The gateway's Segmind API key is not configured; the operator must store it in the gateway's secret"


@cache
def secrets() -> parameters.SecretsProvider:
    """Powertools' provider (its TTL cache) over the container's own client: its default builds a second boto3
    session, which reads botocore's data files again on the first miss."""
    return parameters.SecretsProvider(boto3_client=secrets_manager())


def forget_segmind_key() -> None:
    """Drop the cached key (SnapStart's after-restore hook): a restored environment reads the secret afresh, so a
    rotation is never hidden behind a copy taken when the snapshot was."""
    if secrets.cache_info().currsize:
        secrets().clear_cache()


def get_segmind_key(*, refresh: bool = False) -> str:
    """The key as a plain string. The secret may hold the key itself or JSON `{"api_key": "..."}`."""
    settings = get_settings()
    if not settings.segmind_api_key_secret:
        raise UpstreamFailure(FailureKind.CONFIG, _NOT_CONFIGURED)
    try:
        raw = secrets().get(
            settings.segmind_api_key_secret, max_age=settings.secret_max_age_seconds, force_fetch=refresh
        )
    except parameters.exceptions.GetParameterError:
        # The exception text can name the secret but never holds its value; still, keep it out of the answer.
        raise UpstreamFailure(
            FailureKind.SECRET, "The gateway could not read its Segmind API key from Secrets Manager"
        ) from None
    key = _extract(raw if isinstance(raw, str) else raw.decode())
    if not key or key == PLACEHOLDER:
        raise UpstreamFailure(FailureKind.CONFIG, _NOT_CONFIGURED)
    return key


def _extract(raw: str) -> str:
    text = raw.strip()
    if text.startswith("{"):
        try:
            return str(json.loads(text).get("api_key", "")).strip()
        except ValueError:
            return ""
    return text
