"""Trust and safety on the local stack, as a client and an operator see it: every door's images read as AI-generated
(C2PA signed by the stack's KMS key, model named, and XMP), a HIT is the same marked bytes, a tenant with marks off
gets unmarked images; a refused prompt gets each door's refusal with no upstream call and nothing charged, a clean
one still generates, and a guardrail that is down refuses (fail-closed) or lets through, counted (fail-open)."""

from __future__ import annotations

import base64
import io
import time
import uuid

import c2pa
import openai
import pytest
import requests

from segmind_proxy.adapters.c2pa_marks import read_marks
from segmind_proxy.domain.provenance import TRAINED_ALGORITHMIC_MEDIA

pytestmark = pytest.mark.integration

FLUX = "flux-schnell"
GUARDRAIL = ["guardrail", "--guardrail-id", "localguardrail", "--guardrail-version", "1"]


def tenant(stack, *settings: list[str]) -> str:
    """A tenant of its own (the demo tenant keeps its settings), its key returned."""
    name = f"ts-{uuid.uuid4().hex[:8]}"
    key = stack.cli("tenants", "create", name, "--plan", "enterprise")["api_key"]
    for setting in settings:
        stack.cli("tenants", setting[0], name, *setting[1:])
    return key


def post(stack, path, key, body, **headers):
    return requests.post(f"{stack.base}{path}", json=body, headers={"x-api-key": key, **headers}, timeout=60)


def usage(stack, key, within_s=5.0, **expected):
    deadline = time.monotonic() + within_s
    while True:
        report = requests.get(f"{stack.base}/v1/usage", headers={"x-api-key": key}, timeout=30).json()
        if all(report[name] == value for name, value in expected.items()):
            return report
        assert time.monotonic() < deadline, f"usage not as expected after {within_s}s: {report}"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def stack_serial(stack):
    shown = stack.cli("provenance", "show")
    assert shown["usable"], shown  # the local stack installs a chain of its own KMS key at start
    return shown["serial"]


def assert_marked(image: bytes, slug: str, serial: str) -> None:
    marks = read_marks(image)
    assert marks.valid and not marks.trusted  # a self-made chain: the signature holds, no public CA stands behind it
    assert marks.manifest_source_type == marks.xmp_source_type == TRAINED_ALGORITHMIC_MEDIA
    assert marks.model_slug == slug and marks.prompt is None and marks.signer_serial == serial
    with c2pa.Reader(marks.media_type, io.BytesIO(image)) as reader:  # the library, read directly
        assert reader.get_validation_state() == "Valid"


def test_a_v1_image_is_marked_signed_by_the_stacks_key_and_a_hit_is_the_same_bytes(stack, stack_serial, fake_calls):
    body = {"prompt": f"a marked fox {uuid.uuid4()}", "seed": 11}
    first = post(stack, f"/v1/{FLUX}", stack.api_key, body)
    assert first.status_code == 200 and first.headers["x-provenance"] == "c2pa"
    assert_marked(first.content, FLUX, stack_serial)
    calls = fake_calls()
    again = post(stack, f"/v1/{FLUX}", stack.api_key, body)
    assert (again.headers["x-cache"], again.headers["x-provenance"]) == ("HIT", "c2pa")
    assert again.content == first.content and fake_calls() == calls


def test_base64_png_urls_and_v2_results_are_marked_alike(stack, stack_serial):
    sd = "stable-diffusion-3.5-turbo-txt2img"
    body = {"prompt": f"a marked owl {uuid.uuid4()}", "seed": 3, "width": 256, "height": 256, "image_format": "png"}
    inline = post(stack, f"/v1/{sd}", stack.api_key, {**body, "base64": True}).json()
    assert_marked(base64.b64decode(inline["image"]), sd, stack_serial)
    by_url = post(stack, f"/v1/{sd}", stack.api_key, {**body, "seed": 4, "base64": False}, **{"x-response-mode": "url"})
    assert by_url.headers["x-provenance"] == "c2pa"
    assert_marked(requests.get(by_url.json()["images"][0]["url"], timeout=30).content, sd, stack_serial)
    submitted = post(stack, f"/v2/{FLUX}", stack.api_key, {"prompt": f"a marked job {uuid.uuid4()}"}).json()
    deadline = time.monotonic() + 30
    while (result := requests.get(submitted["response_url"], headers={"x-api-key": stack.api_key}, timeout=30).json())[
        "status"
    ] != "COMPLETED":
        assert time.monotonic() < deadline, result
        time.sleep(0.2)
    assert result["metrics"]["provenance"] == "c2pa"
    assert_marked(requests.get(result["output"], timeout=30).content, FLUX, stack_serial)


def test_openais_door_is_marked_and_the_prompt_only_where_the_tenant_opted_in(stack, stack_serial):
    key = tenant(stack, ["set-marks", "--with-prompt"])
    client = openai.OpenAI(base_url=f"{stack.base}/v1", api_key=key, max_retries=0)
    prompt = f"a marked heron {uuid.uuid4()}"
    answer = client.images.generate(model="flux-1-schnell", prompt=prompt)
    marks = read_marks(base64.b64decode(answer.data[0].b64_json))
    assert marks.valid and marks.model_slug == FLUX and marks.prompt == prompt and marks.signer_serial == stack_serial


def test_a_tenant_with_marks_off_gets_unmarked_images(stack):
    key = tenant(stack, ["set-marks", "off"])
    answer = post(stack, f"/v1/{FLUX}", key, {"prompt": "an unmarked wren", "seed": 2})
    assert answer.headers["x-provenance"] == "none"
    marks = read_marks(answer.content)
    assert not marks.manifest and marks.xmp_source_type is None


def test_a_refused_prompt_gets_each_doors_refusal_with_nothing_called_or_charged(stack, fake_calls):
    key = tenant(stack, ["set-screening", *GUARDRAIL])
    calls, blocked = fake_calls(), {"prompt": "a blocked-by-guardrail street"}
    v1 = post(stack, f"/v1/{FLUX}", key, blocked)
    assert v1.status_code == 400 and "refused by this gateway's content policy" in v1.json()["error"]
    assert "blocked-by-guardrail" not in v1.text  # never what matched
    v2 = post(stack, f"/v2/{FLUX}", key, blocked)
    assert v2.status_code == 400 and "content policy" in v2.json()["error"]
    client = openai.OpenAI(base_url=f"{stack.base}/v1", api_key=key, max_retries=0)
    with pytest.raises(openai.BadRequestError) as refused:
        client.images.generate(model="flux-1-schnell", prompt=blocked["prompt"])
    assert refused.value.code == "moderation_blocked"
    negative = post(
        stack, "/v1/stable-diffusion-3.5-turbo-txt2img", key, {"prompt": "a cat", "negative_prompt": "filtered-example"}
    )
    assert negative.status_code == 400 and negative.json()["error"].startswith("The negative_prompt was refused")
    assert fake_calls() == calls
    report = usage(stack, key, refused_prompts=4)
    assert (report["credits_spent"], report["credits_reserved"], report["images_generated"]) == (0, 0, 0)
    clean = post(stack, f"/v1/{FLUX}", key, {"prompt": "a clean street at dawn"})
    assert clean.status_code == 200 and fake_calls() == calls + 1


def test_the_default_term_list_refuses_without_any_setting(stack, fake_calls):
    calls = fake_calls()
    answer = post(stack, f"/v1/{FLUX}", stack.api_key, {"prompt": "child porn"})
    assert answer.status_code == 400 and fake_calls() == calls


def test_a_guardrail_that_is_down_refuses_by_default_and_lets_through_when_the_policy_fails_open(stack, fake_calls):
    closed = tenant(stack, ["set-screening", *GUARDRAIL])
    opened = tenant(stack, ["set-screening", *GUARDRAIL, "--fail-open"])
    stack.guardrail_config(down=True)
    try:
        calls = fake_calls()
        refused = post(stack, f"/v1/{FLUX}", closed, {"prompt": "a harbour"})
        assert refused.status_code == 503 and "Bedrock Guardrails" in refused.json()["error"]
        assert fake_calls() == calls
        served = post(stack, f"/v1/{FLUX}", opened, {"prompt": "a harbour"})
        assert served.status_code == 200 and fake_calls() == calls + 1
        usage(stack, opened, unscreened_requests=1)
    finally:
        stack.guardrail_config(down=False)
