"""The template's operational pieces: dashboard JSON, alarms, the probe's schedule, and the widgets' queries."""

import json
from pathlib import Path

from local.template import Stack, load_template

ROOT = Path(__file__).resolve().parents[2]


def resolved_dashboard() -> dict:
    stack = Stack("gw")
    return json.loads(stack.resolve(stack.resources["Dashboard"]["Properties"]["DashboardBody"]))


def test_dashboard_body_is_valid_json_with_every_required_view():
    titles = {w["properties"]["title"] for w in resolved_dashboard()["widgets"]}
    assert {
        "Segmind remaining credits",
        "Cache hit ratio (%)",
        "Latency p50 / p99 (ms): API and upstream",
        "Errors by kind",
        "Throttles and dead letters",
        "Usage per tenant",
        "Top prompts by cost",
        "Cache savings per tenant",
    } <= titles


def test_dashboard_log_widgets_run_the_shipped_queries():
    widgets = {
        w["properties"]["title"]: w["properties"]["query"]
        for w in resolved_dashboard()["widgets"]
        if w["type"] == "log"
    }
    for title, name in {
        "Usage per tenant": "usage-per-tenant",
        "Top prompts by cost": "top-prompts-by-cost",
        "Cache savings per tenant": "cache-savings-per-tenant",
    }.items():
        text = " ".join(line.strip() for line in (ROOT / "queries" / f"{name}.logsinsights").read_text().splitlines())
        assert widgets[title].endswith(text)


def test_every_alarm_notifies_the_topic():
    alarms = {k: v for k, v in load_template()["Resources"].items() if v["Type"] == "AWS::CloudWatch::Alarm"}
    assert {
        "LowCreditsAlarm",
        "Api5xxAlarm",
        "UpstreamErrorsAlarm",
        "FunctionThrottlesAlarm",
        "DeadLetterAlarm",
    } <= set(alarms)
    for alarm in alarms.values():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": "AlarmTopic"}]


def test_probe_runs_on_the_schedule_parameter():
    probe = load_template()["Resources"]["CreditsProbeFunction"]["Properties"]
    assert probe["Events"]["Probe"]["Properties"]["Schedule"] == {"Ref": "CreditsProbeSchedule"}
