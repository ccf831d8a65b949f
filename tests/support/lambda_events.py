"""What Lambda hands the functions (API Gateway REST proxy events, SQS records, a context) and reads back."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

from local.template import Stack
from tests.support.segmind import SLUG


class Context:
    function_name = "ApiFunction"
    function_version = "$LATEST"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:ApiFunction"
    log_group_name = "/aws/lambda/ApiFunction"
    log_stream_name = "test"

    def __init__(self, remaining_ms: int = 30000) -> None:
        self.aws_request_id = str(uuid.uuid4())
        self._remaining = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self._remaining


_ROUTES = Stack("events").routes()  # template.yaml's, the most specific first, as API Gateway picks them


def resource_of(path: str) -> tuple[str, dict[str, str]]:
    """API Gateway's resource for a path, and its path parameters (`/v1/{model}`, {"model": ...})."""
    for route in _ROUTES:
        found = route.pattern.match(path)
        if found:
            return route.path, found.groupdict()
    return path, {}


def api_event(
    body: Any = None,
    *,
    method: str = "POST",
    path: str = f"/v1/{SLUG}",
    headers: dict[str, str] | None = None,
    api_key_id: str | None = "tenant-a",
    raw: bytes | None = None,
) -> dict[str, Any]:
    """A REST API proxy event as API Gateway sends it with BinaryMediaTypes */*: the body arrives base64-encoded."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    resource, parameters = resource_of(path) if "{" not in path else (path, {})
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": all_headers,
        "multiValueHeaders": {k: [v] for k, v in all_headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": parameters or None,
        "stageVariables": None,
        "body": base64.b64encode(data).decode() if data else None,
        "isBase64Encoded": bool(data),
        "requestContext": {
            "requestId": str(uuid.uuid4()),
            "stage": "prod",
            "resourcePath": resource,
            "httpMethod": method,
            "path": f"/prod{path}",
            "identity": {"apiKeyId": api_key_id, "apiKey": "client-key-never-forwarded", "sourceIp": "203.0.113.9"},
        },
    }


def body_bytes(response: dict[str, Any]) -> bytes:
    return base64.b64decode(response["body"]) if response.get("isBase64Encoded") else response["body"].encode()


def body_json(response: dict[str, Any]) -> Any:
    return json.loads(body_bytes(response))


def header(response: dict[str, Any], name: str) -> str | None:
    """A header of a Lambda proxy response, from `headers` or `multiValueHeaders`."""
    merged = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
    merged |= {k.lower(): ",".join(v) for k, v in (response.get("multiValueHeaders") or {}).items()}
    return merged.get(name.lower())


def sqs_event(sqs: Any, queue: str, queue_arn: str) -> dict[str, Any] | None:
    """What Lambda's event source mapping would deliver next from the queue (None if empty)."""
    from local.event_sources import sqs_record

    messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=1, AttributeNames=["All"]).get("Messages", [])
    return {"Records": [sqs_record(m, queue_arn, "us-east-1") for m in messages]} if messages else None
