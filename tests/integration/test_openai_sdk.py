"""OpenAI's own SDKs against the local stack: the Python `openai` package and the `openai` npm package (Node),
`images.generate` in both response formats, with `n`, and the SDK's exception classes for refusals; and Vercel's AI SDK
(`generateImage` with its OpenAI-compatible provider, Node) with two models."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import uuid
from pathlib import Path

import openai
import pytest
import requests
from openai import OpenAI

from segmind_proxy.domain.image_formats import sniff_format

pytestmark = pytest.mark.integration

JS_DIR = Path(__file__).parent / "js"


@pytest.fixture
def client(stack) -> OpenAI:
    return OpenAI(
        base_url=f"{stack.base}/v1",
        api_key=stack.api_key,
        max_retries=0,
    )


def prompt() -> str:
    return f"a red fox in the snow #{uuid.uuid4().hex[:8]}"


def test_b64_json_is_the_default_and_n_makes_a_batch(client, fake_calls):
    before = fake_calls()
    answer = client.images.generate(model="stable-diffusion-3.5-turbo", prompt=prompt(), size="256x256", n=3)
    assert answer.data is not None and len(answer.data) == 3
    images = [base64.b64decode(item.b64_json or "") for item in answer.data]
    assert all(sniff_format(image) == "jpeg" for image in images) and len(set(images)) == 3
    assert answer.output_format == "jpeg" and answer.size == "256x256"
    assert fake_calls() == before + 1  # one upstream batch


def test_url_answers_are_fetchable_and_a_seed_is_served_from_the_cache(client, fake_calls):
    text = prompt()
    first = client.images.with_raw_response.generate(
        prompt=text, size="256x256", response_format="url", output_format="png", extra_body={"seed": 31}
    )
    parsed = first.parse()
    assert parsed.data is not None and parsed.data[0].url
    assert sniff_format(requests.get(parsed.data[0].url, timeout=10).content) == "png"
    assert first.headers["x-seed-value"] == "31" and first.headers["x-cache"] == "MISS"
    before = fake_calls()
    again = client.images.with_raw_response.generate(
        prompt=text, size="256x256", response_format="url", output_format="png", extra_body={"seed": 31}
    )
    assert again.headers["x-cache"] == "HIT" and fake_calls() == before


def test_without_a_seed_every_call_is_a_fresh_image(client, fake_calls):
    text, before = prompt(), fake_calls()
    first = client.images.with_raw_response.generate(prompt=text, size="256x256")
    second = client.images.with_raw_response.generate(prompt=text, size="256x256")
    assert first.headers["x-cache"] == second.headers["x-cache"] == "BYPASS"
    assert fake_calls() == before + 2


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"size": "4096x4096"}, "size"),
        ({"size": "huge"}, "size"),
        ({"n": 11}, "n"),
        ({"quality": "high"}, "quality"),
        ({"style": "vivid"}, "style"),
        ({"background": "transparent"}, "background"),
        ({"output_format": "gif"}, "output_format"),
    ],
)
def test_refusals_raise_bad_request_naming_the_param_with_no_upstream_call(client, fake_calls, kwargs, param):
    before = fake_calls()
    with pytest.raises(openai.BadRequestError) as raised:
        client.images.generate(prompt=prompt(), **kwargs)
    assert raised.value.status_code == 400 and raised.value.param == param
    assert fake_calls() == before


def test_unknown_model_and_route_raise_not_found(client):
    with pytest.raises(openai.NotFoundError) as raised:
        client.images.generate(model="dall-e-3", prompt=prompt())
    assert raised.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="stable-diffusion-3.5-turbo", messages=[{"role": "user", "content": "hi"}])
    assert "stable-diffusion-3.5-turbo" in [m.id for m in client.models.list()]
    assert client.models.retrieve("stable-diffusion-3.5-turbo-txt2img").id == "stable-diffusion-3.5-turbo"


def test_a_bearer_key_and_an_x_api_key_are_one_tenant(client, stack):
    """The SDK sends the key as `Authorization: Bearer`; Segmind's routes read `x-api-key`: one tenant's usage."""

    def usage() -> dict:
        return requests.get(f"{stack.base}/v1/usage", headers={"x-api-key": stack.api_key}, timeout=10).json()

    before = usage()
    client.images.generate(prompt=prompt(), size="64x64")
    after = usage()
    assert after["tenant_id"] == before["tenant_id"]
    assert after["requests"] == before["requests"] + 1
    assert after["images_generated"] == before["images_generated"] + 1


def test_the_openai_routes_take_the_key_as_bearer_only(stack):
    """OpenAI's routes read the key from `Authorization: Bearer`, as OpenAI's clients send it; `x-api-key` there is
    refused as a missing key (as Segmind's routes refuse a Bearer key)."""
    body = {"prompt": prompt(), "size": "64x64"}
    url = f"{stack.base}/v1/images/generations"
    assert requests.post(url, json=body, headers={"x-api-key": stack.api_key}, timeout=10).status_code == 401
    bearer = {"Authorization": f"Bearer {stack.api_key}"}
    assert requests.post(url, json=body, headers=bearer, timeout=30).status_code == 200
    assert requests.get(f"{stack.base}/v1/usage", headers=bearer, timeout=10).status_code == 401


def test_unknown_routes_outside_v1_are_api_gateways_404_in_its_one_shape(stack):
    answer = requests.get(f"{stack.base}/v3/anything", headers={"x-api-key": stack.api_key}, timeout=10)
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "unknown_url"


def test_preflight_under_v1_needs_no_key(stack):
    answer = requests.options(
        f"{stack.base}/v1/images/generations",
        headers={"Origin": "https://example.com", "Access-Control-Request-Method": "POST"},
        timeout=10,
    )
    assert answer.status_code in (200, 204)


def run_node(script: str, package: str, stack) -> dict:
    """A script of tests/integration/js run against the stack (base URL, key, a fresh prompt): its last line, as
    JSON."""
    assert (JS_DIR / "node_modules" / package).is_dir(), "run `make test` (or `npm ci` in tests/integration/js)"
    done = subprocess.run(
        ["node", script, f"{stack.base}/v1", stack.api_key, prompt()],
        cwd=JS_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
def test_the_openai_npm_package_generates_in_both_formats(stack, fake_calls):
    before = fake_calls()
    result = run_node("generate.mjs", "openai", stack)
    assert result["b64"] == ["ffd8ff", "ffd8ff"] and result["b64_format"] == "jpeg" and result["size"] == "256x256"
    assert len(result["urls"]) == 1 and requests.get(result["urls"][0], timeout=10).status_code == 200
    assert result["refused"] == {
        "status": 400,
        "param": "size",
        "type": "invalid_request_error",
        "name": "BadRequestError",
    }
    assert fake_calls() == before + 2


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
def test_vercels_ai_sdk_generates_with_two_models(stack, fake_calls):
    """Unchanged but for base URL and key: a model's own fields (seed, negative prompt) go as provider options."""
    before = fake_calls()
    result = run_node("ai-sdk.mjs", "ai", stack)
    # FLUX.1 Dev: two WebP images (its default format) at 16:9, its seed as asked.
    assert result["flux"] == {
        "media_types": ["image/webp", "image/webp"],
        "magic": ["52494646", "52494646"],
        "cache": ["MISS"],
        "seed": "7",
    }
    assert result["sd35"]["media_types"] == ["image/jpeg"] and result["sd35"]["cache"] == ["MISS"]
    assert result["again"]["cache"] == ["HIT"] and result["again"]["seed"] == "8"
    # FLUX.1 Schnell makes one image per request: the SDK's error carries the gateway's status and message.
    assert result["refused"]["status"] == 400 and "'n' (samples)" in result["refused"]["message"]
    assert fake_calls() == before + 2
