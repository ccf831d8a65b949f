"""The local stack as a user meets it: Segmind's own sample request, over HTTP, with only URL and key changed."""

from __future__ import annotations

import base64
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from local.fake_segmind import FakeSegmind
from segmind_proxy.domain.image_formats import sniff_format
from tests.integration.conftest import DEV_KEY, start_stack, stop_stack
from tests.samples import SEGMIND_SAMPLE

pytestmark = pytest.mark.integration


def unique(body: dict, **changes: object) -> dict:
    """The body with a prompt no other test uses, so cache state never leaks between tests."""
    return {**body, "prompt": f"{body['prompt']} #{uuid.uuid4().hex[:8]}", **changes}


def segmind_client_call(base_url: str, api_key: str, data: dict) -> requests.Response:
    """Exactly what Segmind's docs show, with only the URL's host part and the key changed."""
    url = f"{base_url}/v1/stable-diffusion-3.5-turbo-txt2img"
    return requests.post(url, json=data, headers={"x-api-key": api_key}, timeout=60)


def test_segmind_sample_request_gets_a_jpeg_then_a_hit_without_upstream_call(stack, fake_calls):
    before = fake_calls()
    first = segmind_client_call(stack.base, stack.api_key, SEGMIND_SAMPLE)
    assert first.status_code == 200, first.text
    assert first.headers["Content-Type"] == "image/jpeg"
    assert sniff_format(first.content) == "jpeg"
    assert first.content[:3] == b"\xff\xd8\xff"
    assert first.headers["x-cache"] in ("MISS", "HIT")  # HIT only if the sample already ran on this stack
    assert first.headers["x-seed-value"] == "98552302"
    assert first.headers["x-request-id"]
    assert "x-remaining-credits" not in first.headers
    after_first = fake_calls()

    second = segmind_client_call(stack.base, stack.api_key, SEGMIND_SAMPLE)
    assert second.status_code == 200
    assert second.headers["x-cache"] == "HIT"
    assert second.content == first.content
    assert fake_calls() == after_first <= before + 1


def test_an_inline_miss_is_cached_after_its_answer_and_identical_requests_never_regenerate(stack, fake_calls):
    # Each API container registers its internal extension with the Extensions API at init, as on Lambda.
    assert any("Extension registered" in line for line in stack.output)
    data, before = unique(SEGMIND_SAMPLE), fake_calls()
    first = segmind_client_call(stack.base, stack.api_key, data)
    assert first.status_code == 200 and first.headers["x-cache"] == "MISS"
    # Straight after, on any container: the write may still be under way, and they wait for it, never generate.
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: segmind_client_call(stack.base, stack.api_key, data), range(4)))
    assert [(a.status_code, a.headers["x-cache"]) for a in answers] == [(200, "HIT")] * 4
    assert all(a.content == first.content for a in answers)
    assert fake_calls() == before + 1


def test_fake_upstream_receives_the_secrets_key_never_the_clients(stack):
    segmind_client_call(stack.base, stack.api_key, unique(SEGMIND_SAMPLE))
    last = stack.fake_stats()["requests"][-1]
    assert last["api_key"] == "sg_local_fake_segmind_key"
    assert DEV_KEY not in json.dumps(last)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"negative_prompt": "x"}, "prompt"),
        ({"prompt": "x", "steps": 0}, "steps"),
        ({"prompt": "x", "steps": 71}, "steps"),
        ({"prompt": "x", "guidance_scale": 16}, "guidance_scale"),
        ({"prompt": "x", "seed": -5}, "seed"),
        ({"prompt": "x", "sampler": "not-a-sampler"}, "sampler"),
        ({"prompt": "x", "scheduler": "not-a-scheduler"}, "scheduler"),
        ({"prompt": "x", "width": 32}, "width"),
        ({"prompt": "x", "height": 4096}, "height"),
        ({"prompt": "x", "aspect_ratio": "2:1"}, "aspect_ratio"),
        ({"prompt": "x", "batch_size": 11}, "batch_size"),
        ({"prompt": "x", "image_format": "gif"}, "image_format"),
        ({"prompt": "x", "image_quality": 5}, "image_quality"),
        ({"prompt": "x", "base64": "no"}, "base64"),
        ({"prompt": "x", "steps": "4"}, "steps"),
        ({"prompt": "x", "lora": "y"}, "lora"),
        ({"prompt": "x" * 5000}, "prompt"),
    ],
)
def test_each_bad_field_is_a_400_naming_it_with_no_upstream_call(stack, fake_calls, body, field):
    before = fake_calls()
    response = stack.post(body)
    assert response.status_code == 400
    assert field in response.json()["error"]
    assert fake_calls() == before


@pytest.mark.parametrize(
    ("data", "content_type", "status", "fragment"),
    [
        (b"", "application/json", 400, "empty"),
        (b"{oops", "application/json", 400, "not valid JSON"),
        (b"[]", "application/json", 400, "JSON object"),
        (b'{"prompt": "cat", "seed": 1, "seed": 2}', "application/json", 400, "Duplicate key 'seed'"),
        (b"prompt=cat", "application/x-www-form-urlencoded", 415, "Content-Type"),
        (b'{"prompt": "cat"}', "text/plain", 415, "Content-Type"),
    ],
)
def test_malformed_bodies_are_refused_with_no_upstream_call(stack, fake_calls, data, content_type, status, fragment):
    before = fake_calls()
    response = requests.post(
        stack.txt2img, data=data, headers={"x-api-key": stack.api_key, "Content-Type": content_type}, timeout=30
    )
    assert response.status_code == status
    assert fragment in response.json()["error"]
    assert fake_calls() == before


@pytest.mark.parametrize(
    ("key", "code"), [(None, "missing_api_key"), ("", "missing_api_key"), ("wrong-key-00000", "invalid_api_key")]
)
def test_missing_or_wrong_api_key_is_401_before_the_function(stack, fake_calls, key, code):
    before = fake_calls()
    headers = {} if key is None else {"x-api-key": key}
    response = requests.post(stack.txt2img, json=SEGMIND_SAMPLE, headers=headers, timeout=30)
    assert response.status_code == 401 and response.json()["error"]["code"] == code
    assert response.headers["x-request-id"]  # API Gateway's own answers name their request too
    assert fake_calls() == before


def test_base64_true_returns_segmind_json(stack):
    response = stack.post(unique(SEGMIND_SAMPLE, base64=True, image_format="png", width=256, height=256))
    assert response.status_code == 200
    image = base64.b64decode(response.json()["image"])
    assert image[:8] == b"\x89PNG\r\n\x1a\n"


def test_url_mode_gives_presigned_urls_that_download(stack, fake_calls):
    body = unique(SEGMIND_SAMPLE, batch_size=2, width=512, height=512, image_format="webp")
    response = stack.post(body, headers={"x-response-mode": "url"})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["cache"] == "MISS" and answer["expires_in"] > 0 and answer["expires_at"]
    downloads = [requests.get(item["url"], timeout=30) for item in answer["images"]]
    assert [d.status_code for d in downloads] == [200, 200]
    assert all(sniff_format(d.content) == "webp" for d in downloads)
    assert downloads[0].content != downloads[1].content
    calls = fake_calls()
    again = stack.post(body, headers={"x-response-mode": "url"}).json()
    assert again["cache"] == "HIT"
    assert fake_calls() == calls


def test_aspect_ratio_sets_the_image_size(stack):
    response = stack.post(unique(SEGMIND_SAMPLE, aspect_ratio="16:9"))
    assert response.status_code == 200
    width = int.from_bytes(response.content[response.content.index(b"\xff\xc0") + 7 :][:2], "big")
    height = int.from_bytes(response.content[response.content.index(b"\xff\xc0") + 5 :][:2], "big")
    assert (width, height) == (1344, 768)


def test_random_seed_is_reported_and_repeatable_from_cache(stack, fake_calls):
    body = unique(SEGMIND_SAMPLE, seed=-1, width=256, height=256)
    first = stack.post(body)
    assert first.headers["x-cache"] == "BYPASS"
    seed = int(first.headers["x-seed-value"])
    calls = fake_calls()
    # The images are stored just after the answer (under the seed used, which no lease covered before it was
    # known): asked only-if-cached, a repeat costs nothing until they are there.
    deadline = time.monotonic() + 5
    while (repeat := stack.post({**body, "seed": seed}, {"Cache-Control": "only-if-cached"})).status_code == 504:
        assert time.monotonic() < deadline, "the random seed's images were not stored"
        time.sleep(0.05)
    assert repeat.headers["x-cache"] == "HIT"
    assert repeat.content == first.content
    assert fake_calls() == calls


def test_cors_preflight_needs_no_key_and_answers_carry_cors(stack):
    preflight = requests.options(
        stack.txt2img,
        headers={"Origin": "https://frontend.example", "Access-Control-Request-Method": "POST"},
        timeout=30,
    )
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] in ("*", "https://frontend.example")
    assert "x-api-key" in preflight.headers["Access-Control-Allow-Headers"].lower()
    answer = stack.post(unique(SEGMIND_SAMPLE, width=128, height=128), headers={"Origin": "https://frontend.example"})
    assert "x-cache" in answer.headers["Access-Control-Expose-Headers"]


def test_upstream_failure_is_mapped_and_nothing_is_cached(stack):
    stack.fake_config(faults=[{"status": 406}])
    response = stack.post(unique(SEGMIND_SAMPLE, width=128, height=128))
    assert response.status_code == 503
    assert "credits" in response.json()["error"]


def test_health_is_open(stack):
    assert requests.get(f"{stack.base}/v1/health", timeout=10).json() == {"status": "ok"}


def test_unknown_route_is_404(stack):
    response = requests.get(f"{stack.base}/v1/nope", headers={"x-api-key": stack.api_key}, timeout=10)
    assert response.status_code == 404
    assert "error" in response.json()


def test_a_segmind_compatible_server_at_segmind_base_url_gets_the_secrets_key():
    """With SEGMIND_API_KEY set, the stack talks to SEGMIND_BASE_URL (here a stand-in server) using that key."""
    import threading

    from werkzeug.serving import make_server

    upstream = FakeSegmind("sg_operator_real_key_123")
    server = make_server("127.0.0.1", 0, upstream, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base_url = f"http://127.0.0.1:{server.server_port}"
    running = start_stack(
        {
            "SEGMIND_API_KEY": "sg_operator_real_key_123",
            "SEGMIND_BASE_URL": base_url,
            "ALLOWED_ORIGINS": "https://app.example,https://admin.example",
        }
    )
    try:
        response = segmind_client_call(running.base, running.api_key, unique(SEGMIND_SAMPLE, width=256, height=256))
        assert response.status_code == 200, response.text
        assert sniff_format(response.content) == "jpeg"
        assert [call["api_key"] for call in upstream.state.calls] == ["sg_operator_real_key_123"]
        assert "sg_operator_real_key_123" not in "".join(running.output)

        # AllowedOrigins (here from ALLOWED_ORIGINS) is honoured: listed origins are reflected, others get no CORS.
        def preflight(origin: str) -> requests.Response:
            headers = {"Origin": origin, "Access-Control-Request-Method": "POST"}
            return requests.options(running.txt2img, headers=headers, timeout=30)

        assert preflight("https://admin.example").headers["Access-Control-Allow-Origin"] == "https://admin.example"
        assert "Access-Control-Allow-Origin" not in preflight("https://evil.example").headers
    finally:
        stop_stack(running.process)
        server.shutdown()


@pytest.mark.parametrize(
    ("changes", "count"),
    [
        ({"base64": False, "batch_size": 1}, 1),  # 6+ MB of PNG: over the limit once base64-encoded for Lambda
        ({"base64": True, "batch_size": 3}, 3),
    ],
)
def test_answers_too_large_for_lambda_come_back_as_urls(stack, changes, count):
    body = unique(SEGMIND_SAMPLE, width=2048, height=2048, image_format="png", **changes)
    response = stack.post(body)
    assert response.status_code == 200, response.text
    assert response.headers["x-response-mode"] == "url"
    assert response.headers["Content-Type"] == "application/json"
    urls = [item["url"] for item in response.json()["images"]]
    assert len(urls) == count
    image = requests.get(urls[-1], timeout=30).content
    assert image[:8] == b"\x89PNG\r\n\x1a\n" and len(image) > 4_000_000
