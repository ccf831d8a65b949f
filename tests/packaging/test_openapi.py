import json
import re

import pytest

from local.openapi_export import SPEC_PATH, generate
from local.template import ROOT
from segmind_proxy.api.headers import idempotency_key
from segmind_proxy.api.segmind_v1 import response_mode
from segmind_proxy.domain.errors import RequestInvalid
from segmind_proxy.domain.usage import is_month
from tests.support.lambda_events import api_event, body_bytes, body_json

TXT2IMG = "/v1/stable-diffusion-3.5-turbo-txt2img"


def test_committed_spec_matches_the_code():
    assert SPEC_PATH.read_text() == generate(), "docs/openapi.json is stale: run `make openapi`"


def test_spec_documents_request_fields_responses_and_key():
    spec = json.loads(generate())
    operation = spec["paths"][TXT2IMG]["post"]
    request = spec["components"]["schemas"]["StableDiffusion35TurboTxt2imgRequest"]
    assert len(request["properties"]) == 14
    assert request["required"] == ["prompt"]
    assert request["additionalProperties"] is False
    assert "dpmpp_2m" in request["properties"]["sampler"]["enum"]
    assert {"200", "400", "403", "415", "429", "502", "503", "504"} <= set(operation["responses"])
    content = operation["responses"]["200"]["content"]
    assert {"image/jpeg", "image/png", "image/webp", "application/json"} <= set(content)
    batch = spec["components"]["schemas"]["Base64Images"]["properties"]["images"]
    assert "batch" in batch["description"]
    assert operation["security"] == [{"apiKey": []}]
    assert spec["components"]["securitySchemes"]["apiKey"]["name"] == "x-api-key"


def test_spec_and_swagger_ui_are_served(invoke):
    spec = invoke(api_event(method="GET", path="/openapi.json", api_key_id=None))
    assert spec["statusCode"] == 200
    assert TXT2IMG in body_json(spec)["paths"]
    ui = invoke(api_event(method="GET", path="/docs", api_key_id=None))
    assert ui["statusCode"] == 200
    assert b"swagger" in body_bytes(ui).lower()


def test_spec_documents_the_headers_and_query_the_handlers_read_as_they_check_them():
    paths = json.loads(generate())["paths"]

    def parameters(method: str, path: str) -> dict:
        return {p["name"]: p for p in paths[path][method]["parameters"]}

    v1, v2 = parameters("post", TXT2IMG), parameters("post", TXT2IMG.replace("/v1/", "/v2/"))
    assert set(v1) == {"Cache-Control", "Idempotency-Key", "x-response-mode"}
    assert set(v2) == {"Cache-Control", "Idempotency-Key", "x-webhook-url"}
    key_pattern = re.compile(v1["Idempotency-Key"]["schema"]["pattern"])
    for key in ("a", "order-42/retry:1", "x" * 255, "x" * 256, "has space", "é", ""):
        try:
            accepted = idempotency_key({"idempotency-key": key}) == key
        except RequestInvalid:
            accepted = False
        assert bool(key_pattern.match(key)) is accepted, key
    for mode in v1["x-response-mode"]["schema"]["enum"]:
        assert response_mode({"x-response-mode": mode}).value == mode
    with pytest.raises(RequestInvalid):
        response_mode({"x-response-mode": "bytes"})
    month = parameters("get", "/v1/usage")["month"]
    assert month["in"] == "query"
    for value in ("2026-11", "2026-13", "26-11", "2026-1"):
        assert bool(re.match(month["schema"]["pattern"], value)) is is_month(value)


def test_the_spec_has_each_models_routes_and_its_schema_accepts_the_models_own_sample():
    from jsonschema import Draft202012Validator

    from segmind_proxy.domain.catalog import bundled_catalog

    spec = json.loads(generate())
    schemas = spec["components"]["schemas"]
    for model in bundled_catalog():
        for route in (f"/v1/{model.slug}", f"/v2/{model.slug}"):
            body = spec["paths"][route]["post"]["requestBody"]["content"]["application/json"]
            assert body["example"] == model.sample_request
            schema = schemas[body["schema"]["$ref"].rsplit("/", 1)[1]] | {"components": spec["components"]}
            assert list(Draft202012Validator(schema).iter_errors(model.sample_request)) == [], route
            assert list(Draft202012Validator(schema).iter_errors(model.sample_request | {"unknown": 1})), route


def test_the_models_page_matches_the_model_files():
    from local.models_doc import MODELS_PATH
    from local.models_doc import generate as models_page

    assert MODELS_PATH.read_text() == models_page(), "docs/models.md is stale: run `make openapi`"


def test_the_readme_lists_every_model():
    from segmind_proxy.domain.catalog import bundled_catalog

    readme = (ROOT / "README.md").read_text()
    missing = [model.slug for model in bundled_catalog() if f"| {model.name} | `{model.slug}` |" not in readme]
    assert missing == []
