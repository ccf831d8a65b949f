"""A realistic workload for `make bench-peers`: one seeded, open-loop schedule of requests (distinct prompts, bursts of
identical requests sent at the same instant, later repeats), played against any target, and what came back."""

from __future__ import annotations

import base64
import random
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import requests

from bench.sampling import pct
from segmind_proxy.domain.image_formats import sniff_format

WORDS = [
    "lighthouse",
    "fox",
    "harbour",
    "neon",
    "forest",
    "desert",
    "robot",
    "castle",
    "river",
    "mountain",
    "city",
    "garden",
    "storm",
    "violin",
]
# A later repeat comes at least this long after its first request, when the gateway has its image cached (the
# upstream takes at most 5 s); repeats sooner than that are the bursts' job.
REPEAT_AFTER_S = 8.0


@dataclass(frozen=True)
class Arrival:
    at: float  # seconds from the start
    body: dict[str, Any]
    kind: str  # "first", "burst" (a copy sent with its first) or "repeat" (later)


@dataclass(frozen=True)
class Plan:
    requests: int = 300
    distinct: int = 210
    burst_repeats: int = 45  # copies sent alongside their first, in bursts of 3 to 6 identical requests
    rate: float = 8.0  # requests per second, on average
    seed: int = 21


def request_body(n: int, rng: random.Random) -> dict[str, Any]:
    """Every field given, as the gateway forwards it to Segmind, so the fake sees the same body from every target
    (and so waits as long for it: its latency is drawn from the body)."""
    prompt = f"peers workload {n}: a {' '.join(rng.sample(WORDS, 3))}, studio photo"
    return {
        "prompt": prompt,
        "negative_prompt": "low quality, blurry",
        "steps": 4,
        "guidance_scale": 1.0,
        "seed": rng.randrange(1, 2**32),
        "sampler": "dpmpp_2m",
        "scheduler": "sgm_uniform",
        "width": 512,
        "height": 512,
        "aspect_ratio": "custom",
        "batch_size": 1,
        "image_format": "jpeg",
        "image_quality": 95,
        "base64": True,
    }


def burst_sizes(plan: Plan, rng: random.Random) -> dict[int, int]:
    """Which distinct requests come as bursts, and how many identical requests each sends at once."""
    sizes: dict[int, int] = {}
    left = plan.burst_repeats
    candidates = rng.sample(range(plan.distinct), plan.distinct)
    while left > 0:
        size = min(rng.randint(3, 6), left + 1)
        sizes[candidates.pop()] = size
        left -= size - 1
    return sizes


def schedule(plan: Plan) -> list[Arrival]:
    """Events at even intervals (a burst is one event of several requests); the later repeats' events are drawn among
    those late enough for an earlier first to be REPEAT_AFTER_S old, and each repeats one such first at random."""
    rng = random.Random(plan.seed)
    bursts = burst_sizes(plan, rng)
    later = plan.requests - plan.distinct - plan.burst_repeats
    events = plan.distinct + later
    gap = plan.requests / plan.rate / events
    eligible = [i for i in range(events) if i * gap >= REPEAT_AFTER_S + gap]
    repeat_slots = set(rng.sample(eligible, later))
    firsts: list[tuple[float, dict[str, Any]]] = []
    arrivals: list[Arrival] = []
    for slot in range(events):
        at = round(slot * gap, 3)
        if slot in repeat_slots:
            old = [b for t, b in firsts if t <= at - REPEAT_AFTER_S]
            arrivals.append(Arrival(at, rng.choice(old), "repeat"))
            continue
        n = len(firsts)
        body = request_body(n, rng)
        firsts.append((at, body))
        arrivals.append(Arrival(at, body, "first"))
        arrivals += [Arrival(at, body, "burst") for _ in range(bursts.get(n, 1) - 1)]
    return arrivals


@dataclass
class Outcome:
    kind: str
    status: int
    latency_ms: float  # from the scheduled instant, so a late send counts against the target (open loop)
    image: bool
    cache: str | None
    done: float  # perf_counter when answered

    @property
    def due(self) -> float:
        return self.done - self.latency_ms / 1000


@dataclass
class Played:
    outcomes: list[Outcome] = field(default_factory=list)
    upstream_calls: int = 0

    def latencies(self, kind: str | None = None) -> list[float]:
        """Of the 200s, of one kind of arrival or of all."""
        return [o.latency_ms for o in self.outcomes if o.status == 200 and kind in (None, o.kind)]

    def statuses(self) -> Counter:
        return Counter(o.status for o in self.outcomes)

    def not_images(self) -> int:
        return sum(o.status == 200 and not o.image for o in self.outcomes)

    def peak_in_flight(self) -> int:
        edges = sorted([(o.due, 1) for o in self.outcomes] + [(o.done, -1) for o in self.outcomes])
        level = peak = 0
        for _, step in edges:
            level += step
            peak = max(peak, level)
        return peak


def is_image(answer: requests.Response) -> bool:
    """A 200 of base64 JSON whose image decodes to whole image bytes."""
    try:
        return sniff_format(base64.b64decode(answer.json()["image"])) is not None
    except (ValueError, KeyError, TypeError):
        return False


Send = Callable[[dict[str, Any]], requests.Response]


def _answer(send: Send, body: dict[str, Any]) -> requests.Response:
    """The target's answer; a failed exchange as status 0, so it is counted, never dropped."""
    try:
        return send(body)
    except requests.RequestException:
        failed = requests.Response()
        failed.status_code = 0
        return failed


def play(arrivals: list[Arrival], send: Send, workers: int = 160) -> Played:
    """Each request sent at its scheduled instant by a thread of its own (open loop: a slow answer does not delay
    the next request), so a burst's requests are in flight together."""
    played = Played()
    lock = threading.Lock()
    start = time.perf_counter() + 0.5

    def one(arrival: Arrival) -> None:
        due = start + arrival.at
        time.sleep(max(0.0, due - time.perf_counter()))
        answer = _answer(send, arrival.body)
        done = time.perf_counter()
        image = answer.status_code == 200 and is_image(answer)
        outcome = Outcome(
            arrival.kind, answer.status_code, (done - due) * 1000, image, answer.headers.get("x-cache"), done
        )
        with lock:
            played.outcomes.append(outcome)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one, arrivals))
    return played


def summary(played: Played) -> dict[str, Any]:
    latencies = played.latencies()
    return {
        "upstream calls": played.upstream_calls,
        "p50 ms": pct(latencies, 50),
        "p95 ms": pct(latencies, 95),
        "mean ms": round(statistics.fmean(latencies), 1),
        "statuses": dict(sorted(played.statuses().items())),
        "200s not an image": played.not_images(),
        "peak in flight": played.peak_in_flight(),
        "x-cache": dict(sorted(Counter(o.cache for o in played.outcomes if o.cache).items())),
    }
