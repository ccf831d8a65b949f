"""The local API Gateway applies usage plans as API Gateway does (a token bucket per key, and a quota per period),
and its key cache never makes a request wait on moto for a key in use, yet a change reaches it."""

import time
from typing import Any

from local.gateway import ApiKeys, PlanLimits
from local.template import ROOT, load_template
from tests.fakes import FakeClock


def test_throttle_allows_the_burst_then_the_rate():
    clock = FakeClock(now=100.0)
    limits = PlanLimits(clock)
    plan = {"throttle": {"rateLimit": 2.0, "burstLimit": 3}}
    assert [limits.check("k", plan) for _ in range(4)] == [None, None, None, "Too Many Requests"]
    clock.advance(0.5)  # one token back at 2 per second
    assert limits.check("k", plan) is None
    assert limits.check("k", plan) == "Too Many Requests"
    assert limits.check("other-key", plan) is None  # buckets are per key


def test_quota_counts_per_key_and_period():
    limits = PlanLimits(FakeClock(now=100.0))
    plan = {"quota": {"limit": 2, "period": "MONTH"}}
    assert [limits.check("k", plan) for _ in range(3)] == [None, None, "Limit Exceeded"]
    assert limits.check("k2", plan) is None


def test_template_queries_are_the_files_in_queries():
    resources = load_template()["Resources"]
    shipped = {
        r["Properties"]["Name"]["Fn::Sub"].split("/", 1)[1]: r["Properties"]["QueryString"].strip()
        for r in resources.values()
        if r["Type"] == "AWS::Logs::QueryDefinition"
    }
    files = {p.stem: p.read_text().strip() for p in (ROOT / "queries").glob("*.logsinsights")}
    assert shipped == files
    assert set(files) == {"usage-per-tenant", "top-prompts-by-cost", "cache-savings-per-tenant"}


class FakeApiGateway:
    """API Gateway's key calls, counted; `enabled` can change under the cache."""

    def __init__(self) -> None:
        self.enabled = True
        self.calls = 0

    def get_paginator(self, name: str) -> Any:
        assert name == "get_api_keys"
        fake = self

        class Pages:
            def paginate(self, **_: Any) -> list[dict[str, Any]]:
                fake.calls += 1
                return [{"items": [{"id": "k1", "value": "secret", "enabled": fake.enabled}]}]

        return Pages()

    def get_usage_plans(self, keyId: str) -> dict[str, Any]:
        return {"items": [{"id": "plan", "throttle": {}}]}


def settled(keys: ApiKeys) -> None:
    keys._background.submit(lambda: None).result(timeout=5)  # the background lookup, if any, is done


def test_a_key_in_use_is_looked_up_again_in_the_background():
    apigw, clock = FakeApiGateway(), FakeClock(now=100.0)
    keys = ApiKeys(apigw, clock=clock)
    assert keys.lookup("secret")[0]["id"] == "k1" and apigw.calls == 1
    clock.advance(1.0)
    keys.lookup("secret")
    settled(keys)
    assert apigw.calls == 1  # fresh: from the cache
    apigw.enabled = False  # disabled in API Gateway
    clock.advance(ApiKeys.TTL_SECONDS - 0.5)  # past the entry's TTL, short of its staleness
    assert keys.lookup("secret")[0]["id"] == "k1"  # answered from the entry, while it is looked up again
    settled(keys)
    assert apigw.calls == 2
    assert keys.lookup("secret") == (None, None)  # the change has reached the cache


def test_an_entry_idle_past_its_staleness_is_looked_up_before_answering():
    apigw, clock = FakeApiGateway(), FakeClock(now=100.0)
    keys = ApiKeys(apigw, clock=clock)
    keys.lookup("secret")
    apigw.enabled = False
    clock.advance(ApiKeys.STALE_SECONDS)
    assert keys.lookup("secret") == (None, None) and apigw.calls == 2


def test_one_background_lookup_at_a_time_per_key():
    apigw, clock = FakeApiGateway(), FakeClock(now=100.0)
    keys = ApiKeys(apigw, clock=clock)
    keys.lookup("secret")
    keys._background.submit(time.sleep, 0.3)  # holds the worker: the lookups below queue behind it
    clock.advance(ApiKeys.TTL_SECONDS)
    for _ in range(5):
        keys.lookup("secret")
    settled(keys)
    assert apigw.calls == 2
