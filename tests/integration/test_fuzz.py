"""schemathesis against the exported OpenAPI spec, on the local stack: no 5xx, every answer as the spec says."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.generation.meta import GenerationMode, ParameterLocation
from schemathesis.specs.openapi.checks import positive_data_acceptance

from local.openapi_export import SPEC_PATH
from segmind_proxy.domain.catalog import ModelSpec, Role, bundled_catalog
from segmind_proxy.domain.request import default_model

pytestmark = pytest.mark.integration

schema = schemathesis.openapi.from_path(SPEC_PATH)
CATALOG = bundled_catalog()


def shrink(body: dict[str, Any], model: ModelSpec | None) -> None:
    """A model's valid sizes and counts made small (invalid values stay invalid, so negative cases stay negative): a
    named aspect ratio of known size becomes the smallest sized one's `custom` width and height."""
    if model is None:  # OpenAI's route: its own fields
        model = default_model()
        roles = {Role.WIDTH: None, Role.HEIGHT: None, Role.COUNT: "n"}
    else:
        roles = {role: model.field_of(role) for role in (Role.WIDTH, Role.HEIGHT, Role.COUNT)}
    for role, name in roles.items():
        spec = model.fields.get(model.field_of(role) or "")
        value = body.get(name) if name else None
        if spec is None or type(value) is not int or spec.minimum is None or spec.maximum is None:
            continue
        small = max(spec.minimum, 2 if role is Role.COUNT else 256)
        if spec.multiple_of:
            small += -small % spec.multiple_of
        if small < value <= spec.maximum and (not spec.multiple_of or value % spec.multiple_of == 0):
            body[name] = small
    ratio = model.field_of(Role.ASPECT_RATIO)
    sizes = model.fields[ratio].sizes if ratio and roles[Role.WIDTH] else None
    if sizes and isinstance(body.get(ratio), str) and body[ratio] in sizes:
        custom = [value for value in model.fields[ratio].enum or () if value not in sizes]
        if custom:
            body[ratio] = custom[0]


def keys_for(case: Any, key: str) -> dict[str, str]:
    """The tenant key, as x-api-key (Segmind's routes) and as a Bearer key (OpenAI's): each route ignores the other.
    A case whose headers are made invalid may be one without its key: it stays without (API Gateway refuses it),
    instead of being made valid by the key added here and then faulted for being accepted."""
    keys = {"x-api-key": key, "Authorization": f"Bearer {key}"}
    headers = case.meta.components.get(ParameterLocation.HEADER) if case.meta else None
    if headers is not None and headers.mode is GenerationMode.NEGATIVE:
        present = {name.lower() for name in case.headers or {}}
        keys = {name: value for name, value in keys.items() if name.lower() in present}
    return keys


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_spec(case, stack):
    if isinstance(case.body, dict):  # small images keep the fake fast; every other field is fuzzed as generated
        shrink(case.body, CATALOG.find(case.path.rsplit("/", 1)[-1]))
    if case.headers:
        # Every declared header is fuzzed, x-webhook-url included: a URL the gateway refuses never reaches the worker
        # (and is never resolved); one it takes is a loopback receiver (the local stack's rule), which fails fast.
        # only-if-cached is answered 504 on a miss, by design (RFC 9111; test_handler covers it), not a server error.
        cache_control = case.headers.get("Cache-Control")
        if isinstance(cache_control, str) and "only-if-cached" in cache_control.lower():
            case.headers["Cache-Control"] = cache_control.lower().replace("only-if-cached", "")
        # Generated keys repeat across bodies, which is a 422 by design (test_idempotency covers it): one per case.
        if isinstance(case.headers.get("Idempotency-Key"), str):
            case.headers["Idempotency-Key"] = f"{case.headers['Idempotency-Key'][:200]}-{uuid.uuid4().hex}"
    headers = keys_for(case, stack.api_key)
    # As the rest of the suite: a slow CI machine is not a spec violation (schemathesis says 10 s).
    response = case.call(base_url=stack.base, headers=headers, timeout=60)
    # Every check, 405s with Allow for undeclared methods and 401s for missing keys included; but a webhook host
    # must also resolve to an address webhooks may go to (docs/api.md), which no schema can say: its refusal, a
    # 400 naming the header, is that documented rule, not a schema-valid request wrongly refused.
    excluded = [positive_data_acceptance] if refuses_webhook_host(response) else []
    case.validate_response(response, headers=headers, excluded_checks=excluded)


def refuses_webhook_host(response: Any) -> bool:
    if response.status_code != 400:
        return False
    message = response.json().get("error")  # Segmind's shape: only its routes read x-webhook-url
    return (
        isinstance(message, str)
        and message.startswith("Header 'x-webhook-url': ")
        and ("resolve" in message or "which is" in message)
    )
