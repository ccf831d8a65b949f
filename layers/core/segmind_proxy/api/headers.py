"""Request headers of the Segmind front doors that are read beyond the body."""

from __future__ import annotations

import re
from collections.abc import Mapping

from segmind_proxy.domain.errors import RequestInvalid

IDEMPOTENCY_HEADER = "idempotency-key"
KEY_PATTERN = "^[!-~]{1,255}$"  # printable ASCII, no spaces; also the OpenAPI spec's
_KEY = re.compile(KEY_PATTERN)


def idempotency_key(headers: Mapping[str, str]) -> str | None:
    """The client's key, if any: 1 to 255 printable ASCII characters."""
    value = headers.get(IDEMPOTENCY_HEADER)
    if value is None:
        return None
    if not _KEY.match(value):
        raise RequestInvalid("Header 'Idempotency-Key' must be 1 to 255 printable ASCII characters without spaces")
    return value


WEBHOOK_HEADER = "x-webhook-url"
