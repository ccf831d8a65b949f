"""The API handler end to end in-process: API Gateway event in, Lambda response out, moto for AWS, a mocked Segmind."""

import base64
import json
from urllib.parse import urlparse

import pytest

from segmind_proxy.domain.image_formats import sniff_format
from tests.support.aws import BUCKET, SECRET_NAME, SEGMIND_KEY
from tests.support.lambda_events import api_event, body_bytes, body_json, header
from tests.support.segmind import SAMPLE, SLUG


def cached_keys(aws):
    return [o["Key"] for o in aws["s3"].list_objects_v2(Bucket=BUCKET).get("Contents", [])]


def test_sample_request_returns_jpeg_bytes_then_hits_the_cache(invoke, upstream, aws):
    upstream.succeed()
    first = invoke(api_event(SAMPLE))
    assert first["statusCode"] == 200
    assert header(first, "Content-Type") == "image/jpeg"
    assert first["isBase64Encoded"] is True
    image = body_bytes(first)
    assert sniff_format(image) == "jpeg"
    assert header(first, "x-cache") == "MISS"
    assert header(first, "x-seed-value") == "98552302"
    assert header(first, "x-request-id")

    second = invoke(api_event(SAMPLE))
    assert header(second, "x-cache") == "HIT"
    assert body_bytes(second) == image
    assert len(upstream.calls()) == 1


def test_segmind_key_is_injected_and_client_key_is_not_forwarded(invoke, upstream):
    upstream.succeed()
    invoke(api_event(SAMPLE))
    sent = upstream.calls()[0].request
    assert sent.headers["x-api-key"] == SEGMIND_KEY
    assert "client-key-never-forwarded" not in json.dumps(dict(sent.headers))


def test_upstream_receives_every_field_explicitly(invoke, upstream):
    upstream.succeed()
    invoke(api_event({"prompt": "a fox", "aspect_ratio": "16:9", "base64": False}))
    body = upstream.sent_bodies()[0]
    assert body["width"] == 1344 and body["height"] == 768 and body["aspect_ratio"] == "custom"
    assert body["steps"] == 4 and body["sampler"] == "dpmpp_2m" and body["base64"] is True


def test_remaining_credits_never_reach_the_client(invoke, upstream):
    upstream.succeed()
    response = invoke(api_event(SAMPLE))
    names = [*(response.get("headers") or {}), *(response.get("multiValueHeaders") or {})]
    assert names and not any("credit" in name.lower() for name in names)


def test_base64_true_answers_segmind_json(invoke, upstream):
    upstream.succeed()
    response = invoke(api_event({"prompt": "a fox", "base64": True}))
    assert header(response, "Content-Type") == "application/json"
    body = body_json(response)
    assert set(body) == {"image"}
    assert sniff_format(base64.b64decode(body["image"])) == "jpeg"


def test_base64_batch_answers_every_image(invoke, upstream, aws):
    upstream.succeed()
    response = invoke(
        api_event(
            {"prompt": "a fox", "base64": True, "batch_size": 3, "image_format": "png", "width": 256, "height": 256}
        )
    )
    body = body_json(response)
    assert len(body["images"]) == 3
    assert body["image"] == body["images"][0]
    assert len({*body["images"]}) == 3
    assert all(sniff_format(base64.b64decode(i)) == "png" for i in body["images"])
    assert len(cached_keys(aws)) == 3


def test_raw_batch_comes_back_as_urls_so_no_image_is_lost(invoke, upstream):
    upstream.succeed()
    response = invoke(api_event({"prompt": "a fox", "base64": False, "batch_size": 2, "width": 256, "height": 256}))
    assert response["statusCode"] == 200
    assert header(response, "x-response-mode") == "url"
    assert len(body_json(response)["images"]) == 2


def test_url_mode_answers_presigned_urls_that_serve_the_images(invoke, upstream, aws):
    upstream.succeed()
    event = api_event({"prompt": "a fox", "batch_size": 2}, headers={"x-response-mode": "url"})
    body = body_json(invoke(event))
    assert body["cache"] == "MISS" and body["seed"] == 98552302 and body["expires_in"] == 3600
    assert len(body["images"]) == 2
    for item in body["images"]:
        assert "X-Amz-Signature" in item["url"] and "Expires=3600" in item["url"]
        key = urlparse(item["url"]).path.split(f"/{BUCKET}/", 1)[-1].lstrip("/")
        image = aws["s3"].get_object(Bucket=BUCKET, Key=key)["Body"].read()  # the integration test GETs the URL itself
        assert sniff_format(image) == "jpeg"
    hit = body_json(invoke(event))
    assert hit["cache"] == "HIT"
    assert len(upstream.calls()) == 1


@pytest.mark.parametrize("mode", ["zip", "", "  "])  # empty: most likely a client's unset variable, not "inline"
def test_unknown_response_mode_is_refused(invoke, upstream, mode):
    response = invoke(api_event({"prompt": "x"}, headers={"x-response-mode": mode}))
    assert response["statusCode"] == 400
    assert "x-response-mode" in body_json(response)["error"]
    assert upstream.calls() == []


def test_too_large_to_inline_falls_back_to_urls(invoke, upstream, monkeypatch):
    monkeypatch.setenv("INLINE_RESPONSE_MAX_BYTES", "20000")
    from segmind_proxy.settings import get_settings

    get_settings.cache_clear()
    upstream.succeed()
    response = invoke(api_event({"prompt": "a fox", "base64": True, "batch_size": 2, "image_format": "png"}))
    assert response["statusCode"] == 200
    assert header(response, "x-response-mode") == "url"
    assert len(body_json(response)["images"]) == 2


def test_random_seed_bypasses_cache_and_stores_under_the_seed_used(invoke, upstream):
    upstream.succeed(seed_header=4242)
    first = invoke(api_event(SAMPLE | {"seed": -1}))
    assert header(first, "x-cache") == "BYPASS"
    assert header(first, "x-seed-value") == "4242"
    repeat = invoke(api_event(SAMPLE | {"seed": 4242}))
    assert header(repeat, "x-cache") == "HIT"
    assert body_bytes(repeat) == body_bytes(first)
    assert len(upstream.calls()) == 1


def test_random_seed_never_reads_the_cache(invoke, upstream):
    upstream.succeed(seed_header=1, times=2)
    invoke(api_event(SAMPLE | {"seed": -1}))
    assert header(invoke(api_event(SAMPLE | {"seed": -1})), "x-cache") == "BYPASS"
    assert len(upstream.calls()) == 2


def test_no_cache_regenerates_and_no_store_does_not_write(invoke, upstream, aws):
    upstream.succeed(times=3)
    no_store = invoke(api_event(SAMPLE, headers={"Cache-Control": "no-store"}))
    assert header(no_store, "x-cache") == "MISS"
    assert cached_keys(aws) == []
    invoke(api_event(SAMPLE))
    regenerated = invoke(api_event(SAMPLE, headers={"Cache-Control": "no-cache"}))
    assert header(regenerated, "x-cache") == "BYPASS"
    assert len(upstream.calls()) == 3


@pytest.mark.parametrize(
    ("changes", "cache_control", "reason"),
    [
        ({}, "only-if-cached", "not in the cache"),
        ({"seed": -1}, "only-if-cached", "random seed"),
        ({}, "no-cache, only-if-cached", "no-cache forbids"),
    ],
)
def test_only_if_cached_is_a_504_that_calls_and_costs_nothing(invoke, upstream, logs, changes, cache_control, reason):
    refused = invoke(api_event(SAMPLE | changes, headers={"Cache-Control": cache_control}))
    assert refused["statusCode"] == 504 and header(refused, "x-cache") == "MISS"
    assert reason in body_json(refused)["error"] and "nothing was generated or charged" in body_json(refused)["error"]
    assert upstream.calls() == []
    # Counted apart, for the 5xx alarm to leave out, and not logged as a failure.
    lines = [json.loads(line) for line in logs.readouterr().out.splitlines() if line.startswith("{")]
    assert any(line.get("OnlyIfCachedMisses") == [1.0] for line in lines)
    assert not [line for line in lines if line.get("level") == "ERROR"]


def test_only_if_cached_answers_a_hit(invoke, upstream):
    upstream.succeed()
    invoke(api_event(SAMPLE))
    hit = invoke(api_event(SAMPLE, headers={"Cache-Control": "max-age=0, Only-If-Cached"}))
    assert hit["statusCode"] == 200 and header(hit, "x-cache") == "HIT"
    assert len(upstream.calls()) == 1


def test_tenants_never_share_cached_images(invoke, upstream, aws):
    upstream.succeed(times=2)
    invoke(api_event(SAMPLE, api_key_id="tenant-a"))
    other = invoke(api_event(SAMPLE, api_key_id="tenant-b"))
    assert header(other, "x-cache") == "MISS"
    assert len(upstream.calls()) == 2
    prefixes = {key.split("/")[1] for key in cached_keys(aws)}
    assert prefixes == {"tenant-a", "tenant-b"}


def test_storage_failure_still_delivers_the_image(invoke, upstream, aws, monkeypatch):
    aws["s3"].delete_bucket(Bucket=BUCKET)  # every read and write now fails
    upstream.succeed(times=2)
    response = invoke(api_event(SAMPLE))
    assert response["statusCode"] == 200
    assert sniff_format(body_bytes(response)) == "jpeg"
    url_mode = invoke(api_event(SAMPLE | {"base64": True}, headers={"x-response-mode": "url"}))
    assert url_mode["statusCode"] == 200  # cannot presign without storage: answers inline instead
    assert header(url_mode, "x-response-mode") == "inline"


@pytest.mark.parametrize(
    ("content_type", "status"), [("text/plain", 415), ("application/x-www-form-urlencoded", 415), ("", 415)]
)
def test_wrong_content_type_is_415_with_no_upstream_call(invoke, upstream, content_type, status):
    response = invoke(api_event(SAMPLE, headers={"Content-Type": content_type}))
    assert response["statusCode"] == status
    assert "Content-Type" in body_json(response)["error"]
    assert upstream.calls() == []


@pytest.mark.parametrize("coding", ["gzip", "br", "identity, deflate"])
def test_compressed_body_is_415_naming_the_encoding(invoke, upstream, coding):
    response = invoke(api_event(SAMPLE, headers={"Content-Encoding": coding}))
    assert response["statusCode"] == 415
    assert "Content-Encoding" in body_json(response)["error"]
    assert coding.split(", ")[-1] in body_json(response)["error"]
    assert upstream.calls() == []


def test_identity_encoding_is_accepted(invoke, upstream):
    upstream.succeed()
    assert invoke(api_event(SAMPLE, headers={"Content-Encoding": "identity"}))["statusCode"] == 200


@pytest.mark.parametrize("raw", [b"[" * 20000, b'{"prompt": "x", "steps": ' + b"[" * 20000, b'{"a": ' * 10000])
def test_deeply_nested_body_is_400_not_500(invoke, upstream, raw):
    response = invoke(api_event(raw=raw))
    assert response["statusCode"] == 400
    assert "nested too deeply" in body_json(response)["error"]
    assert upstream.calls() == []


def test_json_with_charset_is_accepted(invoke, upstream):
    upstream.succeed()
    response = invoke(api_event(SAMPLE, headers={"Content-Type": "application/json; charset=utf-8"}))
    assert response["statusCode"] == 200


@pytest.mark.parametrize(
    ("raw", "fragment"), [(b"", "empty"), (b"{", "JSON"), (b'{"prompt": "x", "steps": 71}', "'steps'")]
)
def test_bad_bodies_are_400_with_no_upstream_call(invoke, upstream, raw, fragment):
    response = invoke(api_event(raw=raw))
    assert response["statusCode"] == 400
    assert fragment in body_json(response)["error"]
    assert upstream.calls() == []


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        (b'{"prompt": "a fox", "seed": 1, "seed": 2}', "seed"),
        (b'{"prompt": "a fox", "seed": 2, "seed": 2}', "seed"),
        (b'{"prompt": "a fox", "seed": 2, "steps": {"n": 1, "n": 2}}', "steps.n"),
    ],
)
def test_a_key_given_twice_is_400_naming_it_even_when_the_last_value_is_cached(invoke, upstream, raw, key):
    upstream.succeed()
    assert header(invoke(api_event({"prompt": "a fox", "seed": 2})), "x-cache") == "MISS"
    response = invoke(api_event(raw=raw))
    assert response["statusCode"] == 400
    assert body_json(response) == {
        "error": f"Duplicate key '{key}' in the JSON body",
        "errors": [{"field": key, "message": f"Duplicate key '{key}' in the JSON body"}],
    }
    assert len(upstream.calls()) == 1


def test_oversized_body_is_413(invoke, upstream):
    response = invoke(api_event(raw=b'{"prompt": "' + b"x" * 70000 + b'"}'))
    assert response["statusCode"] == 413
    assert upstream.calls() == []


@pytest.mark.parametrize(("status", "expected"), [(406, 503), (500, 502), (401, 502), (400, 400)])
def test_upstream_failures_map_to_gateway_answers(invoke, upstream, status, expected):
    for _ in range(4):
        upstream.fail(status)
    response = invoke(api_event(SAMPLE))
    assert response["statusCode"] == expected
    assert body_json(response)["error"]
    assert header(response, "x-request-id")


def test_upstream_429_is_429_with_retry_after(invoke, upstream):
    for _ in range(3):
        upstream.fail(429, {"error": "rate"}, headers={"x-rate-limit-reset-at-utc": "2099-01-01T00:00:00Z"})
    response = invoke(api_event(SAMPLE))
    assert response["statusCode"] == 429
    assert int(header(response, "Retry-After")) > 0


def test_rotated_key_is_picked_up_without_redeploy(invoke, upstream, aws):
    upstream.succeed()
    invoke(api_event(SAMPLE | {"seed": 1}))
    aws["secrets"].put_secret_value(SecretId=SECRET_NAME, SecretString="sg_rotated_key")
    upstream.fail(401)
    upstream.succeed()
    response = invoke(api_event(SAMPLE | {"seed": 2}))
    assert response["statusCode"] == 200
    assert [c.request.headers["x-api-key"] for c in upstream.calls()] == [SEGMIND_KEY, SEGMIND_KEY, "sg_rotated_key"]


def test_json_secret_and_placeholder(invoke, upstream, aws):
    aws["secrets"].put_secret_value(SecretId=SECRET_NAME, SecretString="REPLACE_WITH_YOUR_SEGMIND_API_KEY")
    response = invoke(api_event(SAMPLE))
    assert response["statusCode"] == 502
    assert "not configured" in body_json(response)["error"]
    assert upstream.calls() == []


def test_json_shaped_secret_is_read(invoke, upstream, aws):
    aws["secrets"].put_secret_value(SecretId=SECRET_NAME, SecretString=json.dumps({"api_key": "sg_from_json"}))
    upstream.succeed()
    assert invoke(api_event(SAMPLE))["statusCode"] == 200
    assert upstream.calls()[0].request.headers["x-api-key"] == "sg_from_json"


def test_key_never_appears_in_logs_or_answers(invoke, upstream, logs):
    upstream.succeed()
    upstream.fail(401)
    upstream.fail(401)
    answers = [invoke(api_event(SAMPLE)), invoke(api_event(SAMPLE | {"seed": 5}))]
    captured = logs.readouterr()
    assert '"level":"INFO"' in captured.out  # the function's log lines are in what is checked
    assert SEGMIND_KEY not in captured.out + captured.err
    assert all(SEGMIND_KEY not in json.dumps(a) for a in answers)


def test_metrics_report_credits_cache_and_images(invoke, upstream, capsys):
    upstream.succeed()
    invoke(api_event(SAMPLE))
    invoke(api_event(SAMPLE))
    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    names = {m["Name"] for record in emitted for d in record["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}
    assert {"RemainingCredits", "CacheMisses", "CacheHits", "ImagesGenerated", "UpstreamLatency"} <= names
    credits = [r["RemainingCredits"] for r in emitted if "RemainingCredits" in r]
    assert credits == [[pytest.approx(99.99)]]


def test_upstream_errors_are_counted_by_kind(invoke, upstream, capsys):
    upstream.fail(406)
    invoke(api_event(SAMPLE))
    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"UpstreamErrors"' in line]
    assert emitted and emitted[0]["ErrorKind"] == "credits"


def test_deadline_comes_from_the_lambda_context(invoke, upstream):
    upstream.fail(500)
    upstream.succeed()
    response = invoke(api_event(SAMPLE), remaining_ms=1000)  # a retry needs MIN_ATTEMPT_SECONDS left: never fits
    assert response["statusCode"] == 502
    assert len(upstream.calls()) == 1


def test_health_needs_nothing(invoke):
    response = invoke(api_event(method="GET", path="/v1/health", api_key_id=None))
    assert response["statusCode"] == 200
    assert body_json(response) == {"status": "ok"}


def test_unknown_route_is_a_segmind_style_404(invoke):
    response = invoke(api_event(method="GET", path="/v1/nope"))
    assert response["statusCode"] == 404
    assert "No route" in body_json(response)["error"]


def test_cors_preflight_and_exposed_headers(invoke, upstream):
    preflight = api_event(
        method="OPTIONS", headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    )
    response = invoke(preflight)
    assert response["statusCode"] == 204
    assert header(response, "Access-Control-Allow-Origin") in ("*", "https://app.example")
    upstream.succeed()
    answer = invoke(api_event(SAMPLE, headers={"Origin": "https://app.example"}))
    assert "x-cache" in header(answer, "Access-Control-Expose-Headers")


@pytest.mark.parametrize("base64_answer", [False, True], ids=["raw", "base64"])
def test_an_inline_miss_is_answered_before_its_images_are_cached(invoke, upstream, aws, later, base64_answer):
    upstream.succeed()
    response = invoke(api_event(SAMPLE | {"base64": base64_answer}))
    assert response["statusCode"] == 200 and header(response, "x-cache") == "MISS"
    assert cached_keys(aws) == [] and len(later.tasks) == 1
    later.run()
    assert len(cached_keys(aws)) == 1
    assert header(invoke(api_event(SAMPLE | {"base64": base64_answer})), "x-cache") == "HIT"


@pytest.mark.parametrize(
    ("headers", "setting"),
    [({"x-response-mode": "url"}, "true"), ({}, "false")],
    ids=["url-mode", "setting-off"],
)
def test_answers_that_need_the_images_stored_wait_for_the_write(
    invoke, upstream, aws, later, monkeypatch, headers, setting
):
    from segmind_proxy.settings import get_settings

    monkeypatch.setenv("STORE_AFTER_ANSWER", setting)
    get_settings.cache_clear()
    upstream.succeed()
    response = invoke(api_event(SAMPLE, headers=headers))
    assert response["statusCode"] == 200
    assert later.tasks == [] and len(cached_keys(aws)) == 1


@pytest.mark.parametrize(
    ("method", "resource", "allow", "openai"),
    [
        ("GET", f"/v1/{SLUG}", "POST", False),
        ("PUT", f"/v2/{SLUG}", "POST", False),
        ("DELETE", "/v2/requests/{request_id}", "GET", False),
        ("POST", "/v1/usage", "GET", False),
        ("GET", "/v1/images/generations", "POST", True),
        ("PATCH", "/v1/models/{model_id}", "GET", True),
        ("HEAD", "/v1/health", "GET", False),
    ],
)
def test_a_method_a_route_does_not_serve_is_405_with_allow_in_the_doors_shape(invoke, method, resource, allow, openai):
    """API Gateway hands these on through each resource's keyless ANY method (template.yaml): key or no key."""
    event = api_event(method=method, path=resource, api_key_id=None)
    event["path"] = resource.replace("{request_id}", "abc").replace("{model_id}", "m")
    answer = invoke(event)
    assert (answer["statusCode"], header(answer, "allow")) == (405, allow)
    error = body_json(answer)["error"]
    message = error["message"] if openai else error
    assert message == f"{method} is not allowed on {event['path']}: it takes {allow}"
    if openai:
        assert (error["type"], error["code"]) == ("invalid_request_error", "method_not_allowed")
