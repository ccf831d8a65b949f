"""What `make bench-peers` writes: its chart, and its section of docs/benchmarks.md between two marker lines (which
`make bench` keeps when it rewrites the rest of the file)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bench.litellm_peer import ENVIRONMENT, MASTER_KEY, Peer
from bench.sampling import pct
from bench.workload import REPEAT_AFTER_S, Plan, Played, schedule, summary

START = "<!-- bench-peers:start -->"
END = "<!-- bench-peers:end -->"


@dataclass
class Report:
    side: dict[str, dict[str, float]]
    played: dict[str, Played]
    plan: Plan
    peer: Peer
    speed: list[int]
    minutes: float


def write_section(path: Path, section: str) -> None:
    """The region between the markers replaced if the file has it, else appended at the end."""
    region = f"{START}\n{section.strip()}\n{END}\n"
    text = path.read_text() if path.exists() else ""
    if START in text and END in text:
        before, _, rest = text.partition(START)
        _, _, after = rest.partition(END)
        text = before + region.rstrip("\n") + after
    else:
        text = (text.rstrip("\n") + "\n\n" if text else "") + region
    path.write_text(text)


def chart(report: Report, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8), gridspec_kw={"width_ratios": [3, 2]})
    for name, played in report.played.items():
        seconds = sorted(ms / 1000 for ms in played.latencies())
        left.step(seconds, [(i + 1) / len(seconds) for i in range(len(seconds))], where="post", label=name)
    left.set_xlabel("latency (s), from each request's scheduled instant")
    left.set_ylabel("share of requests answered")
    left.set_title(f"Workload: {report.plan.requests} requests, upstream 2-5 s")
    left.grid(alpha=0.3)
    left.legend(loc="lower right")
    names = list(report.played)
    calls = [report.played[n].upstream_calls for n in names]
    bars = right.bar(names, calls, color=["C0", "C1", "C2"][: len(names)])
    right.bar_label(bars)
    right.axhline(report.plan.distinct, color="grey", linestyle="--", label=f"{report.plan.distinct} distinct requests")
    right.set_ylabel("upstream calls (credits spent)")
    right.set_title("Upstream calls for the same workload")
    right.set_ylim(0, max(calls) * 1.2)
    right.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _schedule_text(plan: Plan) -> str:
    arrivals = schedule(plan)
    sizes = Counter(a.at for a in arrivals if a.kind != "repeat")
    bursts = sorted(n for n in sizes.values() if n > 1)
    later = sum(a.kind == "repeat" for a in arrivals)
    return (
        f"{plan.requests} requests over {arrivals[-1].at:.0f} s, open loop (a fixed timetable, {plan.rate:g} "
        f"requests/s on average, each sent at its instant whatever the answers before it; latency counts from that "
        f"instant), seeded ({plan.seed}): {plan.distinct} distinct requests (512 x 512 JPEG, base64, every field "
        f"given); {plan.requests - plan.distinct} repeats, of which {plan.burst_repeats} come in {len(bursts)} "
        f"bursts of {min(bursts)} to {max(bursts)} identical requests sent at the same instant, and {later} later "
        f"repeats, each at least {REPEAT_AFTER_S:g} s after its first. The fake's latency for a request is drawn "
        "from a hash of its body in 2,000 to 5,000 ms (`/_fake/config` `latency_ms_range`), so a request waits as "
        "long whichever target sends it. The three targets play the same schedule one after another."
    )


def _side_table(report: Report) -> list[str]:
    lines = ["| path | p50 | p95 | added over direct (p50 / p95) |", "|---|---|---|---|"]
    for name, row in report.side.items():
        # A hit makes no upstream call: nothing of it is "added" to one.
        added = "" if name in ("direct", "gateway hit") else f"{row['added p50']} / {row['added p95']}"
        lines.append(f"| {name} | {row['p50']} | {row['p95']} | {added} |")
    return lines


def _workload_table(report: Report) -> list[str]:
    lines = [
        "| target | upstream calls (credits spent) | p50 ms | p95 ms | answers | 200s not an image | peak in flight |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, played in report.played.items():
        row = summary(played)
        answers = ", ".join(f"{n} x {s}" for s, n in row["statuses"].items())
        if row["x-cache"]:
            answers += " (" + ", ".join(f"{k} {n}" for k, n in row["x-cache"].items()) + ")"
        lines.append(
            f"| {name} | {row['upstream calls']} | {row['p50 ms']} | {row['p95 ms']} | {answers} "
            f"| {row['200s not an image']} | {row['peak in flight']} |"
        )
    return lines


KINDS = {"first": "first of its kind", "burst": "a burst's copy", "repeat": "later repeat"}


def _kinds_table(report: Report) -> list[str]:
    """p50 / p95 by kind of request: where the gateway's cache and coalescing show, and what a copy waits for."""
    names = list(report.played)
    lines = ["| request | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for kind, label in KINDS.items():
        cells = []
        for name in names:
            values = report.played[name].latencies(kind)
            cells.append(f"{pct(values, 50)} / {pct(values, 95)}" if values else "")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def _copies_text(report: Report) -> str:
    """What coalescing costs a burst's copies in time, against the same copies sent direct."""
    # Imported here: the flows read the gateway's settings when imported, and `make bench` imports this module
    # before it sets the function's environment for its in-process measurements.
    from segmind_proxy.flows.coalescing import WAIT_FIRST_POLL_SECONDS, WAIT_MAX_POLL_SECONDS

    slower = round(
        pct(report.played["gateway"].latencies("burst"), 50) - pct(report.played["direct"].latencies("burst"), 50)
    )
    return (
        f"A burst's copy costs no credits at the gateway but took {slower} ms longer at p50 than sent direct: it "
        "waits for the first's images, which it looks for in the cache every "
        f"{WAIT_FIRST_POLL_SECONDS} s, backing off to every {WAIT_MAX_POLL_SECONDS} s, and which land there only "
        "after the first's answer."
    )


def _litellm_text(report: Report) -> list[str]:
    settings = ", ".join(f"`{k}={v}`" for k, v in ENVIRONMENT.items() if k != "LITELLM_MASTER_KEY")
    return [
        f"- **LiteLLM {report.peer.version}**'s proxy (`litellm[proxy]`, in `.venv-litellm` from "
        "`bench/litellm-requirements.txt`), one uvicorn worker (`--num_workers 1`) on a free loopback port, no "
        f"database, with {settings} and a master key in `LITELLM_MASTER_KEY` (`{MASTER_KEY}`: this version "
        "refuses to start without one, and without a database it is the only key). This version has no usage "
        "telemetry left to turn off. Pass-through endpoints are open source in it, `auth: true` included (it was "
        "enterprise-only in earlier releases). Its whole config (the target's port: the fake's free port in that run):",
        "",
        "```yaml",
        report.peer.config.strip(),
        "```",
    ]


def markdown(report: Report, samples: int, upstream_ms: int, concurrency: int) -> str:
    gateway, litellm = report.played["gateway"], report.played["LiteLLM pass-through"]
    return "\n".join(
        [
            "## Beside a peer: LiteLLM's pass-through (`make bench-peers`)",
            "",
            "Made by `make bench-peers` on the local stack (moto for AWS, the fake Segmind), on this project's "
            "2-core machine, where the client, the fake, LiteLLM, moto, the API Gateway emulator and the function's "
            f"containers share the cores. How fast the host was: a 5-million-step Python loop took {report.speed[0]} "
            f"ms before the run and {report.speed[1]} ms after it. The run took {report.minutes} min (LiteLLM's "
            "install on first use adds about half a minute from a warm pip cache).",
            "",
            "Three ways to the same fake upstream (`POST /v1/stable-diffusion-3.5-turbo-txt2img`):",
            "",
            "- **direct:** to the fake, with its key.",
            *_litellm_text(report),
            f"- **the gateway:** the local stack (`LOCAL_LAMBDA_CONCURRENCY={concurrency}`, above the workload's "
            "peak in flight, so no request waits for a free container), the demo tenant's key, its plan's limits "
            "raised as `make load` raises them.",
            "",
            f"### Side by side, upstream at a fixed {upstream_ms} ms",
            "",
            f"{samples} samples per path, round robin (one of each path per round, the order rotated each round, "
            "100 ms apart), so the host's drift reaches every path alike. A miss is a new body; a hit repeats one.",
            "",
            *_side_table(report),
            "",
            "### A workload: bursts and repeats, upstream at 2 to 5 s",
            "",
            _schedule_text(report.plan),
            "",
            *_workload_table(report),
            "",
            "The same latencies by kind of request, p50 / p95 ms:",
            "",
            *_kinds_table(report),
            "",
            _copies_text(report),
            "",
            "![workload latency and upstream calls](benchmarks-peers.png)",
            "",
            f"Credits: LiteLLM spent {litellm.upstream_calls} upstream calls on {report.plan.requests} requests, "
            f"the gateway {gateway.upstream_calls} for {report.plan.distinct} distinct ones (the bursts coalesced "
            "into one call each, the later repeats answered from its cache).",
            "",
            "### Reading it",
            "",
            "- LiteLLM's pass-through forwards bytes. Without its database it checks one master key and keeps no "
            "per-caller keys, usage, budgets or rate limits, and it caches nothing on a pass-through route (its "
            "cache is for its LLM routes): every request is an upstream call, identical ones in flight together "
            "included. A key that is missing or wrong was refused, but as a 500 or 400 rather than a 401 in this "
            "version without its database.",
            "- What the gateway does on top, in the figures above: per-tenant keys and plans, the body checked "
            "before any credit is spent, a budget reserved before the call and settled after it, the cache "
            "(repeats cost nothing) and the coalescing lease (a burst costs one call). Its price on a miss is the "
            "added ms in the side-by-side table: two rounds of AWS calls (moto here) and the local emulator and "
            "Lambda runtime; on AWS those are DynamoDB and S3 round trips and API Gateway's and Lambda's own "
            "overhead, not measured here.",
            "- Everything shares two cores, so added latencies here are upper bounds for both peers. The side by "
            "side is interleaved; the workload's three plays are not (run at once, they would compete for the "
            "cores), so the host's drift between them is not cancelled: compare their upstream calls exactly, "
            "their latencies roughly.",
        ]
    )
