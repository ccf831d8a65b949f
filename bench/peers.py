"""`make bench-peers`: the gateway beside a peer, LiteLLM's proxy with a pass-through endpoint, and direct calls, all to
the same fake Segmind: first side by side at a fixed upstream latency, then a realistic workload (bursts and repeats,
the upstream at 2 to 5 s). Prints both tables and writes its section of docs/benchmarks.md with
docs/benchmarks-peers.png.

Environment: BENCH_PEERS_SAMPLES (default 40), BENCH_UPSTREAM_LATENCY_MS (default 200), BENCH_GAP_MS (default 100)."""

from __future__ import annotations

import os
import random
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import requests

from bench.host import host_speed_ms
from bench.litellm_peer import Peer, running_litellm
from bench.load import LOAD_OVERRIDES
from bench.peers_report import Report, chart, markdown, write_section
from bench.sampling import after_gap, pct
from bench.workload import Plan, Played, play, request_body, schedule, summary
from local.harness import ROOT, SLUG, RunningStack, start_stack, stop_stack
from local.stack import FAKE_SEGMIND_KEY

SAMPLES = int(os.environ.get("BENCH_PEERS_SAMPLES", "40"))
UPSTREAM_MS = int(os.environ.get("BENCH_UPSTREAM_LATENCY_MS", "200"))
WORKLOAD_LATENCY_MS = (2000, 5000)  # Segmind's SD 3.5 Turbo, as seen from outside: 2 to 5 s
# Containers per function: above the workload's peak of requests in flight at the gateway (about 40 at 8 requests/s
# with 2-5 s upstream and bursts), so the emulator never queues one behind a busy container (it waits for a free
# one), which Lambda would not do.
LAMBDA_CONCURRENCY = 48
DOCS = ROOT / "docs"


@dataclass
class Target:
    name: str
    url: str
    headers: dict[str, str]
    http: requests.Session = field(default_factory=requests.Session)

    def __post_init__(self) -> None:
        self.http.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=200))

    def send(self, body: dict[str, Any]) -> requests.Response:
        return self.http.post(self.url, json=body, headers=self.headers, timeout=60)


def targets(stack: RunningStack, peer: Peer) -> dict[str, Target]:
    assert stack.fake
    return {
        "direct": Target("direct", f"{stack.fake}/v1/{SLUG}", {"x-api-key": FAKE_SEGMIND_KEY}),
        "LiteLLM pass-through": Target("LiteLLM pass-through", peer.txt2img, peer.headers),
        "gateway": Target("gateway", stack.txt2img, {"x-api-key": stack.api_key}),
    }


def fresh_body() -> dict[str, Any]:
    return request_body(0, random.Random()) | {"prompt": f"peers side by side {uuid.uuid4().hex}"}


def timed(target: Target, body: dict[str, Any]) -> float:
    elapsed, answer = after_gap(lambda: target.send(body))
    assert answer.status_code == 200, f"{target.name}: {answer.status_code} {answer.text[:200]}"
    return elapsed


def warm_containers(gateway: Target, count: int = LAMBDA_CONCURRENCY) -> None:
    """`count` requests at once, so the emulator starts as many containers: the workload's bursts then find them
    warm, as they would find Lambda's after traffic like it, instead of waiting for the handler's imports."""
    with ThreadPoolExecutor(max_workers=count) as pool:
        statuses = list(pool.map(lambda body: gateway.send(body).status_code, [fresh_body() for _ in range(count)]))
    assert statuses == [200] * count, statuses


def warm(by_name: dict[str, Target]) -> dict[str, Any]:
    """Every target's connections and the gateway's containers warmed; the hit's body cached at the gateway."""
    warm_containers(by_name["gateway"])
    for target in by_name.values():
        for _ in range(4):
            timed(target, fresh_body())
    repeated = fresh_body()
    timed(by_name["gateway"], repeated)
    return repeated


def side_by_side(by_name: dict[str, Target]) -> dict[str, dict[str, float]]:
    """Round robin, one sample of each path per round and the order rotated each round, so the host's drift over
    the run reaches every path alike."""
    repeated = warm(by_name)
    paths = {
        "direct": lambda: timed(by_name["direct"], fresh_body()),
        "LiteLLM pass-through": lambda: timed(by_name["LiteLLM pass-through"], fresh_body()),
        "gateway miss": lambda: timed(by_name["gateway"], fresh_body()),
        "gateway hit": lambda: timed(by_name["gateway"], repeated),
    }
    names = list(paths)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for turn in range(SAMPLES):
        for name in names[turn % len(names) :] + names[: turn % len(names)]:
            samples[name].append(paths[name]())
    rows = {name: {"p50": pct(xs, 50), "p95": pct(xs, 95)} for name, xs in samples.items()}
    for row in rows.values():
        row["added p50"] = round(row["p50"] - rows["direct"]["p50"], 1)
        row["added p95"] = round(row["p95"] - rows["direct"]["p95"], 1)
    return rows


def workload(stack: RunningStack, by_name: dict[str, Target], plan: Plan) -> dict[str, Played]:
    """The same schedule against each target in turn; upstream calls counted by the fake for each."""
    arrivals = schedule(plan)
    stack.fake_config(latency_ms_range=list(WORKLOAD_LATENCY_MS))
    played: dict[str, Played] = {}
    try:
        for name, target in by_name.items():
            before = stack.fake_stats()["calls"]
            played[name] = play(arrivals, target.send)
            played[name].upstream_calls = stack.fake_stats()["calls"] - before
            print(f"workload, {name}: {summary(played[name])}", flush=True)
    finally:
        stack.fake_config(latency_ms_range=None)
    return played


def main() -> int:
    started = time.perf_counter()
    speed = [host_speed_ms()]
    plan = Plan()
    stack = start_stack(
        {
            "FAKE_SEGMIND_LATENCY_MS": str(UPSTREAM_MS),
            "LOCAL_LAMBDA_CONCURRENCY": str(LAMBDA_CONCURRENCY),
            "PARAMETER_OVERRIDES": LOAD_OVERRIDES,  # the demo tenant's plan never throttles the bursts
        }
    )
    try:
        assert stack.fake
        with running_litellm(stack.fake) as peer:
            by_name = targets(stack, peer)
            side = side_by_side(by_name)
            print(f"side by side: {side}", flush=True)
            played = workload(stack, by_name, plan)
    finally:
        stop_stack(stack.process)
    speed.append(host_speed_ms())
    report = Report(side, played, plan, peer, speed, round((time.perf_counter() - started) / 60, 1))
    DOCS.mkdir(exist_ok=True)
    chart(report, DOCS / "benchmarks-peers.png")
    section = markdown(report, SAMPLES, UPSTREAM_MS, LAMBDA_CONCURRENCY)
    write_section(DOCS / "benchmarks.md", section)
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
