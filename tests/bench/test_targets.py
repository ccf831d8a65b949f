"""`make bench`'s verdicts: each target is a ratio to a floor from the same run, and the verdict follows the ratio;
rewriting the document keeps `make bench-peers`'s section."""

from bench.run import HEALTH, ONE_CALL, PEERS_END, PEERS_START, Target, peers_section, targets


def latency(hit: float, added: float, health: float = 7.0, call: float = 4.0) -> dict[str, dict[str, float]]:
    return {
        "proxy hit": {"p50": hit},
        "proxy miss": {"p50": 200 + added, "added_p50": added},
        HEALTH: {"p50": health},
        ONE_CALL: {"p50": call},
    }


COLD = {
    "import + first request, a hit (ms)": 500.0,
    "import boto3 + build the S3 and DynamoDB clients (ms)": 400.0,
    "first request to floor ratio": 1.27,
}


def test_the_floors_are_health_plus_one_round_for_a_hit_and_two_for_a_miss():
    cold, hit, miss = targets(latency(hit=16.5, added=23.0), COLD)
    assert (hit.floor_ms, hit.measured, hit.met) == (11.0, 1.5, True)
    assert (miss.floor_ms, miss.measured, miss.met) == (15.0, 1.53, False)
    assert cold.floor_ms == 400.0


def test_the_cold_start_verdict_follows_the_median_of_the_turns_ratios_not_the_medians_ratio():
    cold = targets(latency(hit=10, added=10), COLD)[0]
    assert cold.measured == 1.27 and cold.met  # 500 / 400 would be 1.25; the turns' own ratios decide
    assert not Target("x", 10, 5, "floor", 1.3, ratio=1.31).met


def test_each_line_says_the_figure_its_floor_and_the_verdict():
    line = Target("hit p50", 30.0, 10.0, "health + one round", 1.5).line()
    assert "30.0 ms = 3.0 x its floor of 10.0 ms (health + one round)" in line
    assert line.endswith("target at most 1.5 x: not met")


def test_rewriting_the_document_keeps_the_peers_section(tmp_path):
    path = tmp_path / "benchmarks.md"
    assert peers_section(path) == ""
    path.write_text(f"# old\n\n{PEERS_START}\n| peer | 1 |\n{PEERS_END}\n")
    assert peers_section(path) == f"\n{PEERS_START}\n| peer | 1 |\n{PEERS_END}\n"
    path.write_text("# no section\n")
    assert peers_section(path) == ""


def test_the_cold_start_script_loads_nothing_the_handler_imports_before_its_clock_starts():
    """Anything loaded before the clock would make the handler's import look cheaper than a cold Lambda's."""
    import json
    import subprocess
    import sys

    from bench.run import CLOCK_STARTS, ROOT, cold_hit_script

    before_clock = cold_hit_script("{}", "key").split(CLOCK_STARTS)[0]
    probe = before_clock + "\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    loaded = {name.split(".")[0] for name in json.loads(done.stdout)}
    assert not loaded & {"segmind_proxy", "bench", "boto3", "botocore", "requests", "pydantic", "aws_lambda_powertools"}


def test_importing_the_benches_reads_no_gateway_settings():
    """`make bench` sets the function's environment after its imports, for its in-process measurements: settings
    read before then would have no bucket, tables or secret."""
    import subprocess
    import sys

    from bench.run import ROOT

    probe = "import bench.run, bench.peers\nfrom segmind_proxy.settings import get_settings\n"
    probe += "print(get_settings.cache_info().currsize)"
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "0"
