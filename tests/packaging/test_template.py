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


# -- keys: the authorizers ----------------------------------------------------------------------------------------
OPENAI_PATHS = ("/v1/images/", "/v1/models")
UNSERVED = "/v1/{proxy+}"  # no route serves it: answered 404 in either protocol's shape, so either header is taken


def api_events():
    template = load_template()
    api_auth = template["Resources"]["GatewayApi"]["Properties"]["Auth"]
    for resource in template["Resources"].values():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        for name, event in resource["Properties"].get("Events", {}).items():
            if event["Type"] == "Api":
                auth = event["Properties"].get("Auth", {})
                keyed = auth.get("ApiKeyRequired", api_auth["ApiKeyRequired"])
                yield name, event["Properties"], keyed, auth.get("Authorizer", api_auth.get("DefaultAuthorizer"))


def test_every_keyed_route_takes_its_key_from_one_of_the_two_authorizers():
    """The key source is AUTHORIZER: a keyed route without an authorizer would have no key and refuse everyone."""
    api = load_template()["Resources"]["GatewayApi"]["Properties"]
    assert api["ApiKeySourceType"] == "AUTHORIZER"
    events = list(api_events())
    assert {name for name, _, keyed, _ in events if keyed} >= {"Txt2Img", "SubmitV2", "JobStatus", "JobResult", "Usage"}
    for name, props, keyed, authorizer in events:
        if keyed:
            assert authorizer in ("SegmindKey", "BearerKey", "AnyKey"), name
            expected = "BearerKey" if props["Path"].startswith(OPENAI_PATHS) else "SegmindKey"
            expected = "AnyKey" if props["Path"] == UNSERVED else expected
            assert authorizer == expected, f"{name} ({props['Path']}) should use {expected}"
        else:  # public: health, the OpenAPI document, the docs, the CORS preflight
            assert authorizer == "NONE", name


def test_the_two_authorizers_read_their_headers_and_share_the_function_and_cache_ttl():
    authorizers = load_template()["Resources"]["GatewayApi"]["Properties"]["Auth"]["Authorizers"]
    assert set(authorizers) == {"SegmindKey", "BearerKey", "AnyKey"}
    assert authorizers["SegmindKey"]["Identity"]["Header"] == "x-api-key"
    assert authorizers["BearerKey"]["Identity"]["Header"] == "Authorization"
    # The unserved paths' authorizer sees both headers, so nothing of it is cached.
    assert authorizers.pop("AnyKey") == {
        "FunctionArn": {"Fn::GetAtt": ["KeyAuthorizerFunction", "Arn"]},
        "FunctionPayloadType": "REQUEST",
        "Identity": {"ReauthorizeEvery": 0},
    }
    for authorizer in authorizers.values():
        assert authorizer["FunctionArn"] == {"Fn::GetAtt": ["KeyAuthorizerFunction", "Arn"]}
        assert authorizer["FunctionPayloadType"] == "TOKEN"  # its answer depends on the cached token alone
        assert authorizer["Identity"]["ReauthorizeEvery"] == {"Ref": "KeyAuthorizerCacheSeconds"}


def test_the_validation_expressions_keep_the_two_headers_apart():
    """No token passes both expressions, so the function's choice (a bearer token, else the value as it is) is the
    authorizer's: a Segmind route never takes `Bearer <key>` in x-api-key, an OpenAI route never a bare key."""
    import re

    authorizers = load_template()["Resources"]["GatewayApi"]["Properties"]["Auth"]["Authorizers"]
    segmind, bearer = (authorizers[n]["Identity"]["ValidationExpression"] for n in ("SegmindKey", "BearerKey"))
    for token in ["k-0123456789abcdefghij", "Bearer k-0123456789", "bearer k", "Basic abc", "a b", ""]:
        assert not (re.fullmatch(segmind, token) and re.fullmatch(bearer, token)), token
    assert re.fullmatch(segmind, "k-0123456789abcdefghij") and re.fullmatch(bearer, "Bearer k-0123456789abcdefghij")


def test_api_gateways_own_answers_are_json_naming_their_request_with_the_statuses_clients_expect():
    """Each gateway response: OpenAI's error object once API Gateway substitutes its variables (no VTL: plain text),
    the request id and CORS; a missing or unknown key is HTTP's 401, as Segmind and OpenAI answer it."""
    import json
    import re

    responses = load_template()["Resources"]["GatewayApi"]["Properties"]["GatewayResponses"]
    for kind, response in responses.items():
        body = re.sub(r"\$context\.[\w.]+", "a value", response["ResponseTemplates"]["application/json"])
        error = json.loads(body)["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["message"], kind
        headers = response["ResponseParameters"]["Headers"]
        assert headers.pop("x-should-retry", None) == ("'false'" if kind == "QUOTA_EXCEEDED" else None), kind
        assert headers == {"Access-Control-Allow-Origin": "'*'", "x-request-id": "context.requestId"}, kind
    assert {kind: responses[kind].get("StatusCode") for kind in ("UNAUTHORIZED", "INVALID_API_KEY")} == {
        "UNAUTHORIZED": 401,
        "INVALID_API_KEY": 401,
    }
