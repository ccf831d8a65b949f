"""Headers of the front doors beyond the body: the request headers they read, and the replay header they answer."""

from __future__ import annotations

import re
from collections.abc import Mapping

from segmind_proxy.domain.errors import RequestInvalid

IDEMPOTENCY_HEADER = "idempotency-key"
# 1 to 255 printable ASCII characters, spaces inside but not at either end (HTTP trims those); the spec's too.
KEY_PATTERN = "^[!-~]([ -~]{0,253}[!-~])?$"
_KEY = re.compile(KEY_PATTERN)


def idempotency_key(headers: Mapping[str, str]) -> str | None:
    """The client's key, if any: 1 to 255 printable ASCII characters (such as a UUID, or `order 1234`)."""
    value = headers.get(IDEMPOTENCY_HEADER)
    if value is None:
        return None
    if not _KEY.match(value):
        raise RequestInvalid(
            "Header 'Idempotency-Key' must be 1 to 255 printable ASCII characters (spaces inside it, not at its ends)"
        )
    return value


WEBHOOK_HEADER = "x-webhook-url"

# On an answer that replays an Idempotency-Key's first answer (v1, v2 and OpenAI's route alike).
REPLAY_HEADER = "x-idempotent-replay"
