import json

from local.openapi_export import SPEC_PATH, generate
from tests.unit.conftest import api_event, body_bytes, body_json

TXT2IMG = "/v1/stable-diffusion-3.5-turbo-txt2img"


def test_committed_spec_matches_the_code():
    assert SPEC_PATH.read_text() == generate(), "docs/openapi.json is stale: run `make openapi`"


def test_spec_documents_request_fields_responses_and_key():
    spec = json.loads(generate())
    operation = spec["paths"][TXT2IMG]["post"]
    request = spec["components"]["schemas"]["Txt2ImgRequest"]
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
