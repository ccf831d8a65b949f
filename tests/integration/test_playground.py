"""The playground in a real browser: headless Chromium (the `browser` fixture in conftest.py) driven by
Playwright, against the local stack. The page loads with no console error and no request to another
origin, generates (v1, OpenAI, v2) with every model of the catalog, shows HIT on a repeat, shows an error next to its
field, offers only the models a key's plan allows, and works from another origin with an origin-restricted key (CORS
as a browser enforces it)."""

from __future__ import annotations

import http.server
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page, expect

from segmind_proxy.domain.catalog import bundled_catalog
from tests.support.http_server import serving

ROOT = Path(__file__).resolve().parents[2]
FILES = ROOT / "layers/core/segmind_proxy/api/playground"
# Set to write docs/playground.png and docs/playground-phone.png (the screenshots of the README and docs/playground.md).
SCREENSHOTS = os.environ.get("PLAYGROUND_SCREENSHOTS") == "1"

pytestmark = pytest.mark.integration


class Watched:
    """A page with every console error and every request it made."""

    def __init__(self, browser: Browser, **context: object) -> None:
        self.context = browser.new_context(**context)
        self.page: Page = self.context.new_page()
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda msg: msg.type == "error" and self.errors.append(msg.text))
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on("request", lambda request: self.requests.append(request.url))

    def origins(self) -> set[str]:
        return {f"{p.scheme}://{p.netloc}" for p in map(urlsplit, self.requests) if p.scheme in ("http", "https")}

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def watched(browser: Browser) -> Iterator[Watched]:
    opened = Watched(browser, viewport={"width": 1280, "height": 1000})
    yield opened
    opened.close()


def open_playground(page: Page, address: str, key: str) -> None:
    page.goto(address)
    expect(page.get_by_label("Prompt", exact=True)).to_be_visible()
    page.get_by_label("Gateway key").fill(key)


def generate(page: Page) -> None:
    page.get_by_role("button", name="Generate").click()
    expect(page.get_by_role("button", name="Generate")).to_be_enabled(timeout=60_000)


def prompt() -> str:
    return f"a playground lighthouse {uuid.uuid4().hex[:8]}"


def test_page_loads_with_its_csp_no_console_error_and_no_other_origin(stack, watched):
    answer = watched.page.goto(f"{stack.base}/playground")
    assert answer is not None and answer.ok
    assert "script-src 'self'" in answer.headers["content-security-policy"]
    expect(watched.page.get_by_label("Sampler")).to_have_value("dpmpp_2m")  # built from the catalog
    expect(watched.page.get_by_label("Aspect ratio")).to_contain_text("16:9 (1344\u00d7768)")
    assert watched.errors == []
    assert watched.origins() == {stack.base}
    landing = watched.page.goto(f"{stack.base}/")
    assert landing is not None and landing.ok
    # Links under the stage's path (none on the local stack).
    expect(watched.page.get_by_role("link", name="Playground")).to_have_attribute("href", "/playground")
    expect(watched.page.get_by_role("link", name="API reference")).to_have_attribute("href", "/docs")


def test_the_first_generate_with_the_forms_defaults_is_a_miss_then_a_hit(stack, watched):
    """The form starts with a fresh seed on each visit, so the sample prompt (the README's, cached by then) is a MISS."""
    page = watched.page
    open_playground(page, f"{stack.base}/playground", stack.api_key)
    seed = page.get_by_label("Seed (-1: random)").input_value()
    assert seed.isdigit() and int(seed) != 98552302
    generate(page)
    expect(page.locator("#cache")).to_have_text("MISS")
    expect(page.locator("#seed-used")).to_have_text(seed)
    generate(page)
    expect(page.locator("#cache")).to_have_text("HIT")
    page.reload()
    expect(page.get_by_label("Seed (-1: random)")).not_to_have_value(seed)


def test_a_generation_shows_an_image_then_a_hit_with_its_seed_and_code(stack, watched):
    page = watched.page
    open_playground(page, f"{stack.base}/playground", stack.api_key)
    page.get_by_label("Prompt", exact=True).fill(prompt())
    page.get_by_label("Seed (-1: random)").fill("-1")
    generate(page)
    expect(page.locator("#images img")).to_have_count(1)
    expect(page.locator("#cache")).to_have_text("BYPASS")  # a random seed never reads the cache
    seed = page.locator("#seed-used").inner_text()
    assert seed.isdigit()
    expect(page.locator("#request-id")).to_have_text(re.compile(r"\w"))
    page.get_by_role("button", name="Reuse seed").click()
    expect(page.get_by_label("Seed (-1: random)")).to_have_value(seed)
    generate(page)
    expect(page.locator("#cache")).to_have_text("HIT")
    expect(page.locator("#images img")).to_have_count(1)
    expect(page.locator("#images a[download]")).to_have_count(1)
    code = page.locator("#code-text").inner_text()
    assert f'"seed":{seed}' in code and stack.api_key not in code and "$GATEWAY_KEY" in code
    for tab in ("Python requests", "JavaScript fetch", "SDK"):
        page.get_by_role("tab", name=tab).click()
        assert stack.api_key not in page.locator("#code-text").inner_text()
    page.get_by_role("button", name="Refresh usage").click()
    expect(page.locator("#usage-figures")).to_contain_text("Cache hits")
    assert watched.errors == [] and watched.origins() == {stack.base}
    assert page.evaluate("window.sessionStorage.getItem('playground.key')") == stack.api_key
    assert all(stack.api_key not in address for address in watched.requests)
    if SCREENSHOTS:
        page.screenshot(path=str(ROOT / "docs/playground.png"), full_page=True)


def test_a_wrong_key_shows_api_gateways_message_on_every_route(stack, watched):
    page = watched.page
    open_playground(page, f"{stack.base}/playground", "not-a-key-of-this-gateway")
    for route in ("v1", "openai"):
        page.get_by_label("Route").select_option(route)
        generate(page)
        expect(page.locator("#form-error")).to_contain_text("Invalid API key")


def test_a_bad_value_shows_its_fields_error(stack, watched):
    page = watched.page
    open_playground(page, f"{stack.base}/playground", stack.api_key)
    page.get_by_label("Steps").fill("500")
    generate(page)
    expect(page.locator("#err-steps")).to_contain_text("70")
    expect(page.get_by_label("Steps")).to_have_attribute("aria-invalid", "true")
    # OpenAI's errors name OpenAI's parameter (n), shown next to Segmind's field it maps from.
    page.get_by_label("Route").select_option("openai")
    page.get_by_label("Steps").fill("4")
    page.get_by_label("Batch size").fill("50")
    generate(page)
    expect(page.locator("#err-batch_size")).not_to_be_empty()
    expect(page.locator("#err-steps")).to_be_empty()


def test_openai_and_v2_routes_show_a_batch(stack, watched):
    page = watched.page
    open_playground(page, f"{stack.base}/playground", stack.api_key)
    page.get_by_label("Route").select_option("openai")
    page.get_by_label("Prompt", exact=True).fill(prompt())
    page.get_by_label("Batch size").fill("2")
    page.get_by_label("Aspect ratio").select_option("16:9")
    generate(page)
    expect(page.locator("#images img")).to_have_count(2)
    expect(page.locator("#cache")).to_have_text("MISS")
    assert '"size":"1344x768"' in page.locator("#code-text").inner_text()
    page.get_by_label("Route").select_option("v2")
    page.get_by_label("Prompt", exact=True).fill(prompt())
    generate(page)
    expect(page.locator("#status")).to_have_text("COMPLETED.")
    expect(page.locator("#images img")).to_have_count(2)
    assert watched.errors == [] and watched.origins() == {stack.base}


def choose_model(page: Page, slug: str) -> None:
    page.get_by_label("Model", exact=True).select_option(slug)
    expect(page.locator("#fields label").first).to_be_visible()


@pytest.mark.parametrize("route", ["v1", "openai"])
def test_every_model_has_its_own_form_and_makes_an_image(stack, watched, route):
    """The form is each model's fields, by their own names, in its file's order; each model's answer is shown, be it
    base64 JSON or (a model with no base64 field, on v1) the image's bytes."""
    page = watched.page
    open_playground(page, f"{stack.base}/playground", stack.api_key)
    page.get_by_label("Route").select_option(route)
    for model in bundled_catalog():
        choose_model(page, model.slug)
        shown = [name for name, spec in model.fields.items() if not spec.delivery]
        expect(page.locator("#fields [name]")).to_have_count(len(shown))
        assert page.eval_on_selector_all("#fields [name]", "(inputs) => inputs.map((i) => i.name)") == shown
        page.get_by_label("Prompt", exact=True).fill(prompt())
        generate(page)
        expect(page.locator("#status")).to_have_text(re.compile("^Done"))
        expect(page.locator("#images img")).to_have_count(1)
        expect(page.locator("#cache")).to_have_text("MISS")
        code = page.locator("#code-text").inner_text()
        assert (model.openai_id if route == "openai" else f"/v1/{model.slug}") in code
    assert watched.errors == [] and watched.origins() == {stack.base}


def test_switching_models_keeps_the_prompt_and_shows_the_new_models_errors(stack, watched):
    page = watched.page
    open_playground(page, f"{stack.base}/playground", stack.api_key)
    typed = prompt()
    page.get_by_label("Prompt", exact=True).fill(typed)
    choose_model(page, "flux-schnell")
    expect(page.get_by_label("Prompt", exact=True)).to_have_value(typed)
    expect(page.get_by_label("Sampler name")).to_have_value("euler")
    expect(page.get_by_label("Batch size")).to_have_count(0)  # SD 3.5's field, not FLUX's
    page.get_by_label("Steps").fill("50")
    generate(page)
    expect(page.locator("#err-steps")).to_contain_text("8")
    watched.errors.clear()  # the browser logs the 400 just asked for
    # Seedream sets aspect ratios only: OpenAI's route sends one as a size of its proportions.
    choose_model(page, "seedream-v3-text-to-image")
    page.get_by_label("Route").select_option("openai")
    page.get_by_label("Aspect ratio").select_option("16:9")
    generate(page)
    expect(page.locator("#images img")).to_have_count(1)
    assert '"size":"1024x576"' in page.locator("#code-text").inner_text()
    page.reload()  # the model chosen stays for the tab
    expect(page.get_by_label("Model", exact=True)).to_have_value("seedream-v3-text-to-image")
    assert watched.errors == []


def test_a_keys_plan_decides_which_models_it_offers(stack, watched):
    created = stack.cli("tenants", "create", f"picker-{uuid.uuid4().hex[:8]}", "--plan", "enterprise")
    stack.cli("tenants", "set-models", created["name"], "flux-schnell")
    page = watched.page
    open_playground(page, f"{stack.base}/playground", created["api_key"])
    page.get_by_label("Gateway key").dispatch_event("change")
    picker = page.get_by_label("Model", exact=True)
    expect(picker).to_have_value("flux-schnell")  # the default model is not in the plan: the first one that is
    expect(page.locator("#model option:not([disabled])")).to_have_count(1)
    expect(page.locator("#model option[disabled]").first).to_contain_text("not in your plan")
    generate(page)
    expect(page.locator("#images img")).to_have_count(1)
    page.get_by_role("button", name="Refresh usage").click()
    expect(page.locator("#usage-figures")).to_contain_text("FLUX.1 Schnell")
    assert watched.errors == []


class _Files(http.server.SimpleHTTPRequestHandler):
    """The page's files under /playground, as another site would host them."""

    def translate_path(self, path: str) -> str:
        name = urlsplit(path).path.removeprefix("/playground").lstrip("/") or "index.html"
        return str(FILES / name)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def other_sites() -> Iterator[list[str]]:
    with serving(_Files) as one, serving(_Files) as another:
        yield [one, another]


def test_the_page_works_from_another_origin_with_an_origin_restricted_key(stack, browser, other_sites):
    allowed, refused = other_sites
    created = stack.cli(
        "tenants", "create", f"playground-{uuid.uuid4().hex[:8]}", "--plan", "enterprise", "--allowed-origin", allowed
    )
    key = created["api_key"]
    for site, works in ((allowed, True), (refused, False)):
        opened = Watched(browser)
        try:
            page = opened.page
            open_playground(page, f"{site}/playground?gateway={stack.base}/", key)
            page.get_by_label("Prompt", exact=True).fill(prompt())
            generate(page)
            if works:
                expect(page.locator("#images img")).to_have_count(1)
                expect(page.locator("#cache")).to_have_text("MISS")
            else:
                expect(page.locator("#form-error")).to_contain_text("CORS")
                expect(page.locator("#images img")).to_have_count(0)
            assert opened.origins() == {site, stack.base}
        finally:
            opened.close()


def test_the_page_is_readable_at_phone_width(stack, browser):
    opened = Watched(browser, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    try:
        page = opened.page
        open_playground(page, f"{stack.base}/playground", stack.api_key)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing wider than the screen
        if SCREENSHOTS:
            page.screenshot(path=str(ROOT / "docs/playground-phone.png"))
        unlabelled = "[...document.querySelectorAll('input, select, textarea')].filter((e) => !e.labels.length).length"
        assert page.evaluate(unlabelled) == 0  # every control has its label
        page.get_by_label("Prompt", exact=True).fill(prompt())
        page.get_by_label("Prompt", exact=True).focus()
        for _ in range(40):  # from the prompt to Generate by keyboard alone, then Enter
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.id") == "submit":
                break
        page.keyboard.press("Enter")
        expect(page.locator("#images img")).to_have_count(1, timeout=60_000)
        assert opened.errors == []
    finally:
        opened.close()
