"""The fake Segmind behaves like the real one where the gateway and the local stack rely on it."""

import base64
import io
import json

import pytest
from PIL import Image
from werkzeug.test import Client

from local.fake_segmind import FakeSegmind, render

URL = "/v1/stable-diffusion-3.5-turbo-txt2img"


@pytest.fixture
def fake():
    return FakeSegmind("sg_fake", credits=10.0)


def post(fake, body, key="sg_fake"):
    return Client(fake).post(URL, json=body, headers={"x-api-key": key})


def test_images_are_deterministic_per_seed_and_prompt():
    assert render("cat", 5, 128, 96, "png", 90) == render("cat", 5, 128, 96, "png", 90)
    assert render("cat", 5, 128, 96, "png", 90) != render("cat", 6, 128, 96, "png", 90)
    assert render("cat", 5, 128, 96, "png", 90) != render("dog", 5, 128, 96, "png", 90)


@pytest.mark.parametrize("image_format", ["jpeg", "png", "webp"])
def test_size_format_and_batch_are_honoured(fake, image_format):
    response = post(fake, {"prompt": "cat", "width": 320, "height": 192, "batch_size": 3, "image_format": image_format})
    images = [base64.b64decode(i) for i in response.get_json()["images"]]
    assert len(images) == 3 and len(set(images)) == 3
    for data in images:
        picture = Image.open(io.BytesIO(data))
        assert picture.size == (320, 192)
        assert picture.format == image_format.upper()


def test_raw_answer_and_segmind_headers(fake):
    response = post(fake, {"prompt": "cat", "seed": 11, "width": 64, "height": 64, "base64": False})
    assert response.headers["Content-Type"] == "image/jpeg"
    assert response.data[:3] == b"\xff\xd8\xff"
    assert response.headers["x-seed-value"] == "11"
    assert float(response.headers["x-remaining-credits"]) < 10.0
    assert response.headers["x-request-id"]


def test_random_seed_is_reported(fake):
    response = post(fake, {"prompt": "cat", "seed": -1, "width": 64, "height": 64})
    assert int(response.headers["x-seed-value"]) >= 0


def test_credits_decrease_and_run_out_with_406(fake):
    balances = []
    for _ in range(2):
        response = post(fake, {"prompt": "cat", "width": 1024, "height": 1024, "steps": 70, "batch_size": 10})
        if response.status_code == 200:
            balances.append(float(response.headers["x-remaining-credits"]))
    assert balances == sorted(balances, reverse=True)
    fake.state.credits = 0.0
    response = post(fake, {"prompt": "cat"})
    assert response.status_code == 406
    assert "credits" in response.get_json()["error"]


def test_wrong_key_is_401_and_credits_endpoint(fake):
    assert post(fake, {"prompt": "cat"}, key="nope").status_code == 401
    credits = Client(fake).get("/v1/get-user-credits", headers={"x-api-key": "sg_fake"}).get_json()
    assert credits == {"credits": 10.0, "free-credits": 0.0}


def test_injected_faults_are_served_in_order(fake):
    Client(fake).post("/_fake/config", json={"faults": [{"status": 500}, {"status": 429, "reset_in": 2}]})
    assert post(fake, {"prompt": "cat"}).status_code == 500
    limited = post(fake, {"prompt": "cat"})
    assert limited.status_code == 429 and limited.headers["x-rate-limit-reset-at-utc"]
    assert post(fake, {"prompt": "cat", "width": 64, "height": 64}).status_code == 200
    stats = json.loads(Client(fake).get("/_fake/stats").data)
    assert stats["calls"] == 3


@pytest.fixture
def slept(monkeypatch):
    """The latencies the fake waits, in ms, recorded instead of slept."""
    waits: list[float] = []
    monkeypatch.setattr("local.fake_segmind.time.sleep", lambda seconds: waits.append(seconds * 1000))
    return waits


def configure(fake, **config):
    response = Client(fake).post("/_fake/config", json=config)
    assert response.status_code == 200, response.get_data(as_text=True)


def test_latency_range_is_drawn_from_the_body(fake, slept):
    """The same body waits the same whoever sends it (key order aside); other bodies spread over the range."""
    configure(fake, latency_ms_range=[30, 60])
    body = {"prompt": "cat", "seed": 7, "width": 64, "height": 64}
    post(fake, body)
    post(fake, dict(reversed(body.items())))
    for n in range(20):
        post(fake, {**body, "prompt": f"cat {n}"})
    assert slept[0] == slept[1]
    assert all(30 <= ms <= 60 for ms in slept)
    assert len(set(slept)) > 10


def test_latency_range_cleared_returns_to_the_fixed_latency(fake, slept):
    configure(fake, latency_ms=25, latency_ms_range=[30, 60])
    configure(fake, latency_ms_range=None)
    post(fake, {"prompt": "cat", "width": 64, "height": 64})
    assert slept == [25]


@pytest.mark.parametrize("bad", [[60, 30], [-1, 5], [5], "fast"])
def test_latency_range_refuses_what_is_not_a_range(fake, bad):
    assert Client(fake).post("/_fake/config", json={"latency_ms_range": bad}).status_code == 400
