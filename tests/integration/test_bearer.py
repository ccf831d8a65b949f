"""Keys as OpenAI's clients send them, end to end on a local stack: `Authorization: Bearer <key>` on a route declared
with the BearerKey authorizer is the same tenant, the same usage ledger and the same plan quota as x-api-key on a
Segmind route. This branch has no OpenAI route yet, so the stack runs template.yaml with `GET /v1/usage` declared as
one is (`Auth: {Authorizer: BearerKey, ApiKeyRequired: true}`)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests
import yaml

from local.harness import RunningStack, start_stack, stop_stack
from local.template import load_template

pytestmark = pytest.mark.integration

QUOTA = 6
SMALL = {"prompt": "bearer test", "width": 256, "height": 256, "base64": False}


@pytest.fixture(scope="module")
def bearer_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    template = load_template()
    usage = template["Resources"]["ApiFunction"]["Properties"]["Events"]["Usage"]["Properties"]
    usage["Auth"] = {"Authorizer": "BearerKey", "ApiKeyRequired": True}
    path = tmp_path_factory.mktemp("template") / "template.yaml"
    path.write_text(yaml.safe_dump(template, sort_keys=False))
    running = start_stack({"LOCAL_TEMPLATE": str(path), "PARAMETER_OVERRIDES": f"EnterpriseMonthlyQuota={QUOTA}"})
    yield running
    stop_stack(running.process)


def usage_by_bearer(stack: RunningStack) -> requests.Response:
    return requests.get(f"{stack.base}/v1/usage", headers={"Authorization": f"Bearer {stack.api_key}"}, timeout=30)


def test_bearer_and_x_api_key_are_one_tenant_one_ledger_one_quota(bearer_stack: RunningStack):
    stack = bearer_stack
    assert stack.post(SMALL).status_code == 200  # x-api-key, Segmind's route: 1 of the quota
    time.sleep(0.5)  # the request's count lands just after its answer
    answer = usage_by_bearer(stack)  # 2
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert report["name"] == "demo" and report["requests"] == 1  # the x-api-key request, seen through the Bearer key
    # The header a route does not take is a missing key (401), whose message says which header each route reads.
    refused = requests.get(f"{stack.base}/v1/usage", headers={"x-api-key": stack.api_key}, timeout=30)
    wrong_header = refused.json()["error"]
    assert refused.status_code == 401 and wrong_header["code"] == "missing_api_key"
    assert "x-api-key" in wrong_header["message"] and "Authorization: Bearer" in wrong_header["message"]
    refused = requests.post(stack.txt2img, json=SMALL, headers={"Authorization": f"Bearer {stack.api_key}"}, timeout=30)
    assert (refused.status_code, refused.json()["error"]) == (401, wrong_header)
    # One plan quota for both headers: 4 more requests, alternating, reach it; then both are refused.
    for n in range(QUOTA - 2):
        answer = stack.post(SMALL) if n % 2 else usage_by_bearer(stack)
        assert answer.status_code == 200, answer.text
    for answer in (stack.post(SMALL), usage_by_bearer(stack)):
        assert (answer.status_code, answer.json()["error"]["code"]) == (429, "quota_exceeded")
        assert answer.headers["x-should-retry"] == "false"
