"""Key authorizer: hands API Gateway the tenant key a request carries, for API Gateway itself to check and meter.

One function, three authorizers in template.yaml: the TOKEN authorizers `SegmindKey`, which gives it the `x-api-key`
header (the key as it is, Segmind's way), and `BearerKey`, the `Authorization` header (`Bearer <key>`, OpenAI's way);
and, for the paths under /v1/ that no route serves, the uncached REQUEST authorizer `AnyKey`, which takes either. It authenticates nothing:
the API's key source is AUTHORIZER, so API Gateway takes `usageIdentifierKey` as the request's API key, then checks
it (known, enabled, on a usage plan) and applies that plan's throttle and quota exactly as it did the x-api-key
header, and the function behind finds the tenant from `requestContext.identity.apiKeyId` as before.

API Gateway caches the answer by the token, so the answer depends on the token alone; its policy allows the whole
stage, so one cached answer serves every route. No logging: the token is a secret, and there is nothing else to say.
"""

import re
from typing import Any

# What API Gateway's validation expressions (template.yaml) let through, checked again here: a header value of
# printable ASCII without spaces for x-api-key, `Bearer <the same>` for Authorization.
_BEARER = re.compile(r"[Bb][Ee][Aa][Rr][Ee][Rr] ([!-~]+)")
_KEY = re.compile(r"[!-~]+")


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    token = _token(event)
    bearer = _BEARER.fullmatch(token)
    key = bearer.group(1) if bearer else token
    if not _KEY.fullmatch(key):
        # API Gateway's way to answer 401 (its UNAUTHORIZED gateway response): an error whose message is exactly this.
        raise PermissionError("Unauthorized")
    return {
        "principalId": "tenant-key",  # never the key: principalId reaches logs
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": stage_arn(event["methodArn"])}
            ],
        },
        "usageIdentifierKey": key,
        "context": {"keySource": "bearer" if bearer else "x-api-key"},
    }


def _token(event: dict[str, Any]) -> str:
    """A TOKEN authorizer's header value; for the REQUEST authorizer of the paths no route serves (`AnyKey`), the
    x-api-key header if there is one, else the Authorization header."""
    if event.get("type") != "REQUEST":
        return event.get("authorizationToken") or ""
    headers = {name.lower(): value for name, value in (event.get("headers") or {}).items()}
    return headers.get("x-api-key") or headers.get("authorization") or ""


def stage_arn(method_arn: str) -> str:
    """`arn:aws:execute-api:<region>:<account>:<api>/<stage>/<method>/<path>` -> every method and path of the stage."""
    api, stage = method_arn.split("/")[:2]
    return f"{api}/{stage}/*/*"
