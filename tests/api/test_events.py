"""The sample events in events/ (for `sam local invoke -e` or the console) stay valid for the handler."""

import json
from pathlib import Path

import pytest

from tests.support.lambda_events import body_json

EVENTS = Path(__file__).resolve().parents[2] / "events"
EXPECTED = {
    "txt2img-raw.json": 200,
    "txt2img-base64-batch.json": 200,
    "txt2img-url.json": 200,
    "txt2img-invalid.json": 400,
    "health.json": 200,
    "preflight.json": 204,
}


def test_every_event_file_is_covered():
    assert sorted(p.name for p in EVENTS.glob("*.json")) == sorted(EXPECTED)


@pytest.mark.parametrize(("name", "status"), EXPECTED.items())
def test_sample_event_gets_its_answer(invoke, upstream, name, status):
    upstream.succeed()
    response = invoke(json.loads((EVENTS / name).read_text()))
    assert response["statusCode"] == status
    if name == "txt2img-base64-batch.json":
        assert len(body_json(response)["images"]) == 2
