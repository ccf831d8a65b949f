"""Every catalog model on the local stack: each page's own sample request, sent unchanged but for the base URL and
the key, gets an image and then a HIT; Segmind's SDK works unchanged against non-default models; a model name is
never echoed unless it is a plain name; a model's images are never served for another."""

from __future__ import annotations

import base64
import uuid

import pytest
import requests
from segmind import SegmindClient

from segmind_proxy.domain.catalog import bundled_catalog
from segmind_proxy.domain.image_formats import sniff_format

pytestmark = pytest.mark.integration

MODELS = list(bundled_catalog())


@pytest.mark.parametrize("model", MODELS, ids=lambda model: model.slug)
def test_each_models_sample_request_gets_an_image_then_a_hit(stack, fake_calls, model):
    url = f"{stack.base}/v1/{model.slug}"
    headers = {"x-api-key": stack.api_key}
    calls = fake_calls()
    first = requests.post(url, json=model.sample_request, headers=headers, timeout=60)
    assert first.status_code == 200, first.text
    assert first.headers["x-cache"] in ("MISS", "HIT")  # a second run of the suite on one stack: already cached
    again = requests.post(url, json=model.sample_request, headers=headers, timeout=60)
    assert again.status_code == 200 and again.headers["x-cache"] == "HIT"
    assert again.content == first.content and sniff_format(again.content) is not None
    assert fake_calls() - calls <= 1  # one upstream call at most, for the first


def test_segmind_sdk_runs_non_default_models_unchanged(stack):
    client = SegmindClient(api_key=stack.api_key, base_url=f"{stack.base}/v1")
    prompt = f"an sdk test {uuid.uuid4().hex[:8]}"
    answer = client.run_sync("flux-schnell", prompt=prompt, width=512, height=512)
    assert answer.status_code == 200 and sniff_format(answer.content) == "jpeg"
    job = client.run("seedream-v3-text-to-image", prompt=prompt, aspect_ratio="1:1")
    assert job["status"] == "COMPLETED" and job["output"].startswith("http")


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("no-such-model", "'no-such-model'"),
        ("..%2F..%2Fetc", "asked for"),
        ("x" * 300, "asked for"),
        ("é", "asked for"),
    ],
)
def test_an_unknown_model_is_a_404_naming_it_only_when_plain(stack, name, shown):
    answer = requests.post(
        f"{stack.base}/v1/{name}", json={"prompt": "x"}, headers={"x-api-key": stack.api_key}, timeout=30
    )
    assert answer.status_code == 404
    message = answer.json()["error"]
    if "%2F" in name:  # decoded into a deeper path: no model route, the gateway's 404, not echoing it either
        assert message == "No route for POST (the path asked for): see /docs for the routes"
    else:
        assert f"No model {shown}" in message and "/v1/models" in message


def test_a_request_for_one_model_sent_to_another_is_refused_naming_the_foreign_fields(stack, fake_calls):
    calls = fake_calls()
    sd35 = {"prompt": "x", "batch_size": 2, "image_format": "png"}
    answer = requests.post(f"{stack.base}/v1/flux-dev", json=sd35, headers={"x-api-key": stack.api_key}, timeout=30)
    assert answer.status_code == 400
    fields = {error["field"] for error in answer.json()["errors"]}
    assert fields == {"batch_size", "image_format"}
    assert fake_calls() == calls


def test_one_models_images_are_never_served_for_another(stack):
    body = {"prompt": f"two models {uuid.uuid4().hex[:8]}", "width": 512, "height": 512, "seed": 7}
    headers = {"x-api-key": stack.api_key}
    for slug in ("stable-diffusion-3.5-turbo-txt2img", "flux-schnell"):
        answer = requests.post(f"{stack.base}/v1/{slug}", json=body, headers=headers, timeout=60)
        assert answer.status_code == 200 and answer.headers["x-cache"] == "MISS", slug


@pytest.mark.parametrize("model", MODELS, ids=lambda model: model.openai_id)
def test_the_openai_sdk_generates_with_every_model_by_its_id(stack, model):
    from openai import OpenAI

    client = OpenAI(base_url=f"{stack.base}/v1", api_key=stack.api_key, max_retries=0)
    prompt = f"openai sdk {model.slug} {uuid.uuid4().hex[:8]}"
    answer = client.images.generate(model=model.openai_id, prompt=prompt, size="1024x1024")
    assert len(answer.data) == 1 and sniff_format(base64.b64decode(answer.data[0].b64_json)) is not None
    listed = {item.id for item in client.models.list().data}
    assert model.openai_id in listed
