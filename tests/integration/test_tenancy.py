"""Metered multi-tenant access on the local stack: the CLI, plans, budgets under concurrency, isolation."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

pytestmark = pytest.mark.integration

SMALL = {"prompt": "tenant test", "width": 256, "height": 256, "base64": False}  # 0.004 credits each


def name() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


def post(stack, key, body, headers=None):
    return requests.post(stack.txt2img, json=body, headers={"x-api-key": key, **(headers or {})}, timeout=60)


def usage(stack, key, within_s: float = 5.0, **expected):
    """The tenant's usage once no request is in flight and the `expected` counts are in: an answer's ledger record
    (its settlement, or the count of a hit or a refusal) lands just after it; its credits show as reserved until
    then."""
    deadline = time.monotonic() + within_s
    while True:
        report = requests.get(f"{stack.base}/v1/usage", headers={"x-api-key": key}, timeout=30).json()
        if not report["credits_reserved"] and all(report[name] == value for name, value in expected.items()):
            return report
        assert time.monotonic() < deadline, f"not settled after {within_s}s: {report}"
        time.sleep(0.05)


def test_demo_tenant_exists_at_start(stack):
    assert usage(stack, stack.api_key)["name"] == "demo"


def test_new_tenant_sees_its_usage_grow_by_exactly_what_it_did(stack, fake_calls):
    created = stack.cli("tenants", "create", name(), "--plan", "enterprise", "--budget-credits", "1")
    key = created["api_key"]
    before = fake_calls()
    prompt = f"usage {uuid.uuid4().hex}"
    answers = [post(stack, key, {**SMALL, "prompt": prompt, "seed": seed}) for seed in (1, 2, 1, 1)]
    assert [a.headers["x-cache"] for a in answers] == ["MISS", "MISS", "HIT", "HIT"]
    assert fake_calls() == before + 2
    assert post(stack, key, {**SMALL, "steps": 99}).status_code == 400
    report = usage(stack, key, requests=5)  # every answer's count is in
    assert (report["cache_hits"], report["images_generated"], report["rejected_requests"]) == (2, 2, 1)
    assert report["credits_spent"] == pytest.approx(0.008)
    assert report["remaining"]["credits"] == pytest.approx(0.992)
    assert answers[-1].headers["x-budget-remaining-credits"] == "0.992"
    shown = stack.cli("tenants", "show", created["name"])
    assert shown["usage"]["images_generated"] == 2


def test_throttled_at_its_plans_rate(stack):
    key = stack.cli("tenants", "create", name(), "--plan", "free")["api_key"]  # 1 request/s, burst 2
    codes = [
        requests.get(f"{stack.base}/v1/usage", headers={"x-api-key": key}, timeout=30).status_code for _ in range(6)
    ]
    assert codes[:2] == [200, 200]
    assert 429 in codes
    refused = requests.get(f"{stack.base}/v1/usage", headers={"x-api-key": key}, timeout=30)
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limit_exceeded"
    time.sleep(1.2)
    assert requests.get(f"{stack.base}/v1/usage", headers={"x-api-key": key}, timeout=30).status_code == 200


def test_budget_holds_under_concurrency_with_nothing_overspent(stack, fake_calls):
    created = stack.cli("tenants", "create", name(), "--plan", "enterprise", "--budget-images", "5")
    key = created["api_key"]
    before = fake_calls()
    prompt = f"race {uuid.uuid4().hex}"
    bodies = [{**SMALL, "prompt": prompt, "seed": seed} for seed in range(24)]
    with ThreadPoolExecutor(max_workers=12) as pool:
        codes = [r.status_code for r in pool.map(lambda body: post(stack, key, body), bodies)]
    assert sorted(set(codes)) == [200, 402]
    assert codes.count(200) == 5
    assert fake_calls() == before + 5  # no upstream call for any refused request
    report = usage(stack, key)
    assert report["images_generated"] == 5 and report["remaining"]["images"] == 0
    refused = post(stack, key, {**SMALL, "prompt": prompt, "seed": 999})
    assert refused.status_code == 402 and "budget" in refused.json()["error"]


def test_no_tenant_sees_anothers_images_urls_or_usage(stack):
    a = stack.cli("tenants", "create", name(), "--plan", "enterprise")
    b = stack.cli("tenants", "create", name(), "--plan", "enterprise")
    body = {**SMALL, "prompt": f"isolation {uuid.uuid4().hex}"}
    url_a = post(stack, a["api_key"], body, {"x-response-mode": "url"}).json()
    url_b = post(stack, b["api_key"], body, {"x-response-mode": "url"}).json()
    assert (url_a["cache"], url_b["cache"]) == ("MISS", "MISS")
    assert f"/cache/{a['tenant_id']}/" in url_a["images"][0]["url"]
    assert f"/cache/{b['tenant_id']}/" in url_b["images"][0]["url"]
    assert usage(stack, a["api_key"])["tenant_id"] == a["tenant_id"]
    assert usage(stack, b["api_key"])["images_generated"] == 1


def test_suspended_rotated_and_deleted_keys_stop_at_once(stack):
    created = stack.cli("tenants", "create", name(), "--plan", "enterprise")
    key, tenant = created["api_key"], created["name"]
    assert usage(stack, key)["name"] == tenant
    stack.cli("tenants", "suspend", tenant)
    # The function refuses it (the key stays enabled), so the tenant is told why.
    suspended = requests.get(f"{stack.base}/v1/usage", headers={"x-api-key": key}, timeout=30)
    assert suspended.status_code == 403
    assert suspended.json()["error"] == f"Tenant '{tenant}' is suspended; contact the operator"
    openai = requests.get(f"{stack.base}/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert openai.status_code == 403 and openai.json()["error"]["type"] == "permission_error"
    stack.cli("tenants", "resume", tenant)
    assert usage(stack, key)["name"] == tenant  # at once too: the key was never disabled
    new_key = stack.cli("tenants", "rotate-key", tenant)["api_key"]
    # Refused at once: by the function while API Gateway's key cache still has the key, by API Gateway after.
    assert requests.get(f"{stack.base}/v1/usage", headers={"x-api-key": key}, timeout=30).status_code in (401, 403)
    assert usage(stack, new_key)["tenant_id"] == created["tenant_id"]
    stack.cli("tenants", "delete", tenant, "--yes")
    gone = requests.get(f"{stack.base}/v1/usage", headers={"x-api-key": new_key}, timeout=30)
    assert gone.status_code in (401, 403)


def test_browser_key_works_only_from_its_origins(stack):
    created = stack.cli("tenants", "create", name(), "--plan", "enterprise", "--allowed-origin", "https://shop.example")
    key = created["api_key"]
    good = post(stack, key, SMALL, {"Origin": "https://shop.example"})
    assert good.status_code == 200 and good.headers["Access-Control-Allow-Origin"] == "https://shop.example"
    bad = post(stack, key, SMALL, {"Origin": "https://evil.example"})
    assert bad.status_code == 403 and "Access-Control-Allow-Origin" not in bad.headers
    assert post(stack, key, SMALL).status_code == 403  # no Origin: not from a browser page on the list


def test_billing_report_lists_every_tenant(stack):
    report = stack.cli("usage")
    names = {row["name"] for row in report["tenants"]}
    assert "demo" in names and report["month"]


def test_a_tenant_deleted_mid_month_stays_in_the_billing_report(stack):
    created = stack.cli("tenants", "create", name(), "--plan", "enterprise")
    assert post(stack, created["api_key"], SMALL | {"prompt": name()}).status_code == 200
    spent = usage(stack, created["api_key"], images_generated=1)["credits_spent"]
    before = stack.cli("usage")
    stack.cli("tenants", "delete", created["name"], "--yes")
    after = stack.cli("usage")
    assert after["credits_spent_total"] == pytest.approx(before["credits_spent_total"])
    row = next(row for row in after["tenants"] if row["tenant_id"] == created["tenant_id"])
    assert (row["name"], row["status"], row["credits_spent"]) == (created["name"], "deleted", spent)
    shown = stack.cli("tenants", "show", created["tenant_id"])
    assert shown["status"] == "deleted" and shown["usage"]["images_generated"] == 1
