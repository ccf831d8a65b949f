"""The landing page at the stage's root links to the playground and the docs under the stage's path, whether the
root was asked with its slash (`/prod/`) or without (`/prod`, where relative links would leave the stage)."""

import json
import re

import pytest

from segmind_proxy.api.proxy_events import base_url, path_prefix
from segmind_proxy.domain.catalog import bundled_catalog
from tests.support.lambda_events import api_event, body_bytes


@pytest.mark.parametrize("asked", ["/prod/", "/prod"])
def test_the_landing_page_links_stay_under_the_stage(invoke, asked):
    event = api_event(method="GET", path="/", api_key_id=None)
    event["requestContext"]["path"] = asked
    answer = invoke(event)
    assert answer["statusCode"] == 200
    links = re.findall(r'href="([^"]+)"', body_bytes(answer).decode())
    assert {"/prod/playground", "/prod/docs", "/prod/openapi.json", "/prod/playground/app.css"} <= set(links)


@pytest.mark.parametrize(
    ("full_path", "path", "prefix"),
    [("/prod/", "/", "/prod"), ("/prod", "/", "/prod"), ("/prod/v1/usage", "/v1/usage", "/prod"), ("/", "/", "")],
)
def test_the_path_prefix_is_the_stage_or_nothing(full_path, path, prefix):
    event = {"path": path, "headers": {"Host": "api.example"}, "requestContext": {"path": full_path}}
    assert path_prefix(event) == prefix
    assert base_url(event) == f"https://api.example{prefix}"


def test_the_playgrounds_catalog_is_every_model_as_validation_reads_it(invoke):
    """The form of each model is built from this: its fields (not those of delivery, which the page sets per route),
    their bounds, and the OpenAI parameter each is set through."""
    answer = invoke(api_event(method="GET", path="/playground/catalog.json", api_key_id=None))
    assert answer["statusCode"] == 200
    catalog = json.loads(body_bytes(answer))
    models = {model["slug"]: model for model in catalog["models"]}
    assert set(models) == {model.slug for model in bundled_catalog()}
    assert catalog["default"] in models
    sd35 = models["stable-diffusion-3.5-turbo-txt2img"]
    assert [field["name"] for field in sd35["fields"]][:2] == ["prompt", "negative_prompt"]
    assert "base64" not in {field["name"] for field in sd35["fields"]} and sd35["base64"] == "base64"
    steps = next(field for field in sd35["fields"] if field["name"] == "steps")
    assert (steps["minimum"], steps["maximum"], steps["default"], steps["role"]) == (1, 70, 4, "steps")
    assert sd35["openai"]["params"] == {
        "prompt": "prompt",
        "width": "size",
        "height": "size",
        "aspect_ratio": "size",
        "batch_size": "n",
        "image_format": "output_format",
        "image_quality": "output_compression",
    }
    assert models["flux-dev"]["openai"]["formats"] == {"webp": "webp", "jpg": "jpeg", "png": "png"}
    assert models["flux-schnell"]["base64"] is None  # its v1 answer is the image's bytes
    assert models["flux-schnell"]["routes"] == {"v1": "/v1/flux-schnell", "v2": "/v2/flux-schnell"}
