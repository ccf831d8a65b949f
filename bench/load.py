"""`make load`: a bounded load test of the local stack (loopback only; stops by itself).

Mixed traffic (cache hits, misses, invalid bodies) at fixed concurrency from an enterprise tenant whose plan is
raised for the run, then a burst from a free-plan tenant. Pass: zero unexpected answers, every 200 a whole image,
429s only from the free plan."""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import requests

from local.harness import RunningStack, start_stack, stop_stack
from segmind_proxy.domain.image_formats import sniff_format

LOAD_OVERRIDES = "EnterpriseRateLimit=5000 EnterpriseBurstLimit=10000 EnterpriseMonthlyQuota=10000000"


@dataclass
class LoadResult:
    requests: int
    seconds: float
    outcomes: Counter = field(default_factory=Counter)  # (kind, status)
    unexpected: list[str] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    upstream_calls: int = 0
    misses_sent: int = 0
    free_plan: Counter = field(default_factory=Counter)

    def summary(self) -> dict:
        lat = sorted(self.latencies_ms)
        return {
            "requests": self.requests,
            "seconds": round(self.seconds, 1),
            "throughput_rps": round(self.requests / self.seconds, 1),
            "p50_ms": round(statistics.median(lat), 1),
            "p95_ms": round(lat[int(len(lat) * 0.95) - 1], 1),
            "outcomes": {f"{k} {s}": n for (k, s), n in sorted(self.outcomes.items())},
            "unexpected": len(self.unexpected),
            "upstream_calls": self.upstream_calls,
            "distinct_misses": self.misses_sent,
            "free_plan_burst": dict(self.free_plan),
        }


def run_load(stack: RunningStack, total: int, concurrency: int, *, seed: int = 7) -> LoadResult:
    rng = random.Random(seed)
    warm = [
        {"prompt": f"load warm {i} {uuid.uuid4().hex[:6]}", "width": 128, "height": 128, "base64": False}
        for i in range(20)
    ]
    key = stack.cli("tenants", "create", f"load-{uuid.uuid4().hex[:6]}", "--plan", "enterprise")["api_key"]
    session = requests.Session()
    session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=concurrency))
    for body in warm:
        session.post(stack.txt2img, json=body, headers={"x-api-key": key}, timeout=60)
    plan = []
    for _ in range(total):
        roll = rng.random()
        if roll < 0.5:
            plan.append(("hit", rng.choice(warm)))
        elif roll < 0.85:
            plan.append(
                ("miss", {"prompt": f"load miss {uuid.uuid4().hex}", "width": 128, "height": 128, "base64": False})
            )
        else:
            plan.append(("invalid", {"prompt": "x", "steps": rng.choice([0, 71, "4"]), "sampler": "nope"}))
    before = stack.fake_stats()["calls"]
    result = LoadResult(requests=total, seconds=0.0, misses_sent=sum(kind == "miss" for kind, _ in plan))

    def one(item: tuple[str, dict]) -> None:
        kind, body = item
        started = time.perf_counter()
        try:
            answer = session.post(stack.txt2img, json=body, headers={"x-api-key": key}, timeout=60)
        except requests.RequestException as exc:
            result.unexpected.append(f"{kind}: {type(exc).__name__}")
            return
        result.latencies_ms.append((time.perf_counter() - started) * 1000)
        result.outcomes[(kind, answer.status_code)] += 1
        expected = 400 if kind == "invalid" else 200
        if answer.status_code != expected:
            result.unexpected.append(f"{kind}: {answer.status_code} {answer.text[:120]}")
        elif expected == 200 and sniff_format(answer.content) != "jpeg":
            result.unexpected.append(f"{kind}: 200 without a whole image")  # a lost image
        elif kind == "hit" and answer.headers.get("x-cache") != "HIT":
            result.unexpected.append(f"hit answered {answer.headers.get('x-cache')}")

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(one, plan))
    result.seconds = time.perf_counter() - started
    result.upstream_calls = stack.fake_stats()["calls"] - before

    free = stack.cli("tenants", "create", f"load-free-{uuid.uuid4().hex[:6]}", "--plan", "free")["api_key"]
    for _ in range(10):  # free plan: 1 request/s, burst 2
        status = session.get(f"{stack.base}/v1/usage", headers={"x-api-key": free}, timeout=30).status_code
        result.free_plan[status] += 1
    return result


def check(result: LoadResult) -> list[str]:
    problems = list(result.unexpected[:10])
    if result.upstream_calls != result.misses_sent:
        problems.append(f"{result.upstream_calls} upstream calls for {result.misses_sent} distinct misses")
    if result.free_plan.get(429, 0) == 0:
        problems.append("the free plan's burst was never throttled")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()
    stack = start_stack({"PARAMETER_OVERRIDES": LOAD_OVERRIDES, "LOCAL_LAMBDA_CONCURRENCY": "8"})
    try:
        result = run_load(stack, args.requests, args.concurrency)
    finally:
        stop_stack(stack.process)
    print(json.dumps(result.summary(), indent=2))
    problems = check(result)
    for problem in problems:
        print(f"FAIL: {problem}")
    print("load test passed" if not problems else "load test FAILED")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
