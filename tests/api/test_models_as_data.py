"""Adding a model is adding a file: a model file dropped into the package's data folder is routable on both Segmind
routes, validated by its own fields and priced by its own price, with its path and request schema in the spec, with
no code change."""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import pytest
import responses

from local.fake_segmind import render
from segmind_proxy.domain.catalog import MODELS_DIRECTORY, bundled_catalog
from tests.support.aws import make_tenant
from tests.support.lambda_events import api_event, body_json, header
from tests.support.segmind import UPSTREAM

SLUG = "test-seventh-model"


@pytest.fixture
def seventh_model(env) -> Iterator[str]:
    """A copy of FLUX.1 Schnell's file under another slug and id, with its own price; removed afterwards."""
    from segmind_proxy.composition import catalog

    folder = Path(str(resources.files("segmind_proxy").joinpath(MODELS_DIRECTORY)))
    data = json.loads((folder / "flux-schnell.json").read_text())
    data |= {"slug": SLUG, "name": "The seventh model", "openai_id": "seventh"}
    data["price"] = {"credits_per_image": 0.125, "source": "this test"}
    added = folder / f"{SLUG}.json"
    added.write_text(json.dumps(data))
    bundled_catalog.cache_clear()
    catalog.cache_clear()
    try:
        yield SLUG
    finally:
        added.unlink()
        bundled_catalog.cache_clear()
        catalog.cache_clear()


def test_a_model_file_added_is_routable_validated_priced_and_documented(invoke, tenancy, seventh_model):
    from segmind_proxy.composition import services

    services.cache_clear()
    make_tenant(tenancy, budget_credits=1.0)
    # Its own validation: FLUX.1 Schnell's fields, so neither SD 3.5 Turbo's base64 nor its batch_size.
    for foreign in ("base64", "batch_size"):
        refused = invoke(api_event({"prompt": "x", foreign: 2}, path=f"/v1/{SLUG}", api_key_id="key-acme"))
        assert refused["statusCode"] == 400 and body_json(refused)["errors"][0]["field"] == foreign
    with responses.RequestsMock() as mock:
        mock.add_callback(responses.POST, f"{UPSTREAM}/v1/{SLUG}", callback=_one_jpeg)
        made = invoke(
            api_event({"prompt": "the seventh", "width": 512, "height": 512}, path=f"/v1/{SLUG}", api_key_id="key-acme")
        )
        sent = json.loads(mock.calls[0].request.body)
    assert made["statusCode"] == 200 and header(made, "x-cache") == "MISS"
    assert header(made, "x-budget-remaining-credits") == "0.875"  # its own price: 0.125 an image
    assert sent["sampler_name"] == "euler" and "batch_size" not in sent  # its own fields, its defaults
    spec = body_json(invoke(api_event(method="GET", path="/openapi.json", api_key_id=None)))
    assert f"/v1/{SLUG}" in spec["paths"] and f"/v2/{SLUG}" in spec["paths"]
    assert "TestSeventhModelRequest" in spec["components"]["schemas"]


def _one_jpeg(request):
    body = json.loads(request.body)
    image = render(body["prompt"], body["seed"], body["width"], body["height"], "jpeg", 80)
    return 200, {"x-seed-value": str(body["seed"]), "Content-Type": "image/jpeg"}, image
