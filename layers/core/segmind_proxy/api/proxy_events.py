"""What the front doors read of API Gateway's REST proxy event, as API Gateway sends it (binary media types `*/*`:
every body arrives base64-encoded)."""

from __future__ import annotations

import base64
import re
from typing import Any


def body_of(event: dict[str, Any]) -> bytes | None:
    raw = event.get("body")
    if raw is None:
        return None
    return base64.b64decode(raw) if event.get("isBase64Encoded") else raw.encode()


def headers_of(event: dict[str, Any]) -> dict[str, str]:
    """Header names lower-cased: HTTP's are case-insensitive, and API Gateway passes them as the client sent them."""
    return {k.lower(): v for k, v in (event.get("headers") or {}).items()}


def request_id(event: dict[str, Any]) -> str | None:
    return (event.get("requestContext") or {}).get("requestId")


def api_key_id(event: dict[str, Any]) -> str | None:
    """API Gateway's id of the key the client sent: never anything the client controls."""
    return ((event.get("requestContext") or {}).get("identity") or {}).get("apiKeyId")


def base_url(event: dict[str, Any]) -> str:
    """This API's absolute base URL as the client called it (custom domain or execute-api with stage): the stage, if
    any, is what `requestContext.path` has before the resource's `path`."""
    headers = headers_of(event)
    context = event.get("requestContext") or {}
    host = headers.get("host") or context.get("domainName")
    proto = headers.get("x-forwarded-proto", "https")
    return f"{proto}://{host}{path_prefix(event)}"


def path_prefix(event: dict[str, Any]) -> str:
    """What the client's path has before the resource's (the stage, `/prod`, on an execute-api URL; nothing on a
    custom domain or the local stack). The stage's root asked without its slash (`/prod`) is the resource `/`."""
    path = event.get("path") or ""
    full_path = (event.get("requestContext") or {}).get("path") or path
    if path == "/" and not full_path.endswith("/"):
        full_path += "/"
    return full_path[: len(full_path) - len(path)] if full_path.endswith(path) else ""


_PLAIN_PATH = re.compile(r"/[A-Za-z0-9._/-]{0,199}")


def shown_path(path: str) -> str:
    """A path as an error message may repeat it: a plain one as it is, anything else (`..`, control or non-ASCII
    characters, very long) not at all."""
    return path if _PLAIN_PATH.fullmatch(path) and ".." not in path else "(the path asked for)"


def path_parameter(event: dict[str, Any], name: str) -> str:
    """A path parameter of the route's resource (`{model}`), as API Gateway decoded it; empty if absent."""
    return str((event.get("pathParameters") or {}).get(name) or "")
