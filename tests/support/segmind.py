"""Segmind as the handler's tests see it over HTTP: a `responses`-mocked API that renders real images."""

from __future__ import annotations

import base64
import json
from typing import Any

import responses

from local.fake_segmind import render
from tests.samples import SEGMIND_SAMPLE

SLUG = "stable-diffusion-3.5-turbo-txt2img"
UPSTREAM = "https://segmind.test"
UPSTREAM_URL = f"{UPSTREAM}/v1/{SLUG}"

SAMPLE = SEGMIND_SAMPLE


class MockedSegmind:
    """A `responses`-mocked Segmind that renders real images via the fake's renderer."""

    def __init__(self, mock: responses.RequestsMock) -> None:
        self.mock = mock
        self.credits = 100.0

    def calls(self) -> list[Any]:
        return [c for c in self.mock.calls if c.request.url == UPSTREAM_URL]

    def sent_bodies(self) -> list[dict[str, Any]]:
        return [json.loads(c.request.body) for c in self.calls()]

    def succeed(self, *, seed_header: int | None = None, times: int = 1) -> None:
        def reply(request: Any) -> tuple[int, dict[str, str], str]:
            body = json.loads(request.body)
            seed = body["seed"] if body["seed"] != -1 else (seed_header or 777)
            images = [
                base64.b64encode(
                    render(body["prompt"], seed + i, body["width"], body["height"], body["image_format"], 80)
                ).decode()
                for i in range(body["batch_size"])
            ]
            self.credits -= 0.01
            headers = {"x-remaining-credits": f"{self.credits:.2f}", "x-seed-value": str(seed), "x-request-id": "up-1"}
            payload = {"image": images[0]} if len(images) == 1 else {"images": images}
            return 200, headers, json.dumps(payload)

        for _ in range(times):
            self.mock.add_callback(responses.POST, UPSTREAM_URL, callback=reply)

    def fail(self, status: int, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> None:
        self.mock.add(responses.POST, UPSTREAM_URL, json=body or {"error": "boom"}, status=status, headers=headers)
