"""OpenAI's own JavaScript SDK (the npm `openai` package of tests/integration/js) running in a browser page on
another origin, pointed at the gateway: its preflight asks for the SDK's `X-Stainless-*` headers, which the gateway
must allow for the browser to send the request at all."""

from __future__ import annotations

import http.server
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser

from tests.support.http_server import serving

pytestmark = pytest.mark.integration

SDK = Path(__file__).resolve().parent / "js/node_modules/openai"
# The SDK's ES modules import one another by relative paths, so a browser loads them as they are installed.
PAGE = """<!doctype html><meta charset="utf-8"><title>OpenAI SDK in a browser</title>
<script type="module">
import OpenAI from "/openai/index.mjs";
const asked = new URLSearchParams(location.search);
const client = new OpenAI({apiKey: asked.get("key"), baseURL: asked.get("gateway") + "/v1",
                           dangerouslyAllowBrowser: true, maxRetries: 0});
try {
  const answer = await client.images.generate({prompt: asked.get("prompt"), size: "256x256", seed: 7});
  window.outcome = {images: answer.data.length, b64: answer.data[0].b64_json.length};
} catch (error) {
  window.outcome = {error: `${error.constructor.name}: ${error.message}`};
}
</script>"""


class _Site(http.server.SimpleHTTPRequestHandler):
    """Another site: the page at /, and the installed SDK under /openai/."""

    extensions_map: ClassVar[dict[str, str]] = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".mjs": "text/javascript",
    }

    def do_GET(self) -> None:
        if urlsplit(self.path).path == "/":
            body = PAGE.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()

    def translate_path(self, path: str) -> str:
        return str(SDK / urlsplit(path).path.removeprefix("/openai/"))

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    assert (SDK / "index.mjs").exists(), "the openai npm package: `make test` installs it (see the Makefile)"
    with serving(_Site) as address:
        yield address


def test_openais_js_sdk_generates_from_a_browser_on_another_origin(stack, browser: Browser, site):
    context = browser.new_context()
    try:
        page = context.new_page()
        prompt = f"a browser sdk lighthouse {uuid.uuid4().hex[:8]}"
        page.goto(f"{site}/?gateway={stack.base}&key={stack.api_key}&prompt={prompt}")
        page.wait_for_function("window.outcome !== undefined", timeout=60_000)
        outcome = page.evaluate("window.outcome")
        assert outcome.get("error") is None, outcome
        assert outcome["images"] == 1 and outcome["b64"] > 1000
    finally:
        context.close()
