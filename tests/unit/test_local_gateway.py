"""The local API Gateway applies usage plans as API Gateway does: a token bucket per key, and a quota per period."""

from local.gateway import PlanLimits
from local.template import ROOT, load_template


class Clock:
    now = 100.0

    def __call__(self):
        return self.now


def test_throttle_allows_the_burst_then_the_rate():
    clock = Clock()
    limits = PlanLimits(clock)
    plan = {"throttle": {"rateLimit": 2.0, "burstLimit": 3}}
    assert [limits.check("k", plan) for _ in range(4)] == [None, None, None, "Too Many Requests"]
    clock.now += 0.5  # one token back at 2 per second
    assert limits.check("k", plan) is None
    assert limits.check("k", plan) == "Too Many Requests"
    assert limits.check("other-key", plan) is None  # buckets are per key


def test_quota_counts_per_key_and_period():
    limits = PlanLimits(Clock())
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
