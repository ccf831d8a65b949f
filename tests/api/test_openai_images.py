"""OpenAI's front door driven with API Gateway events: the mapping onto Segmind's request, what is refused (each
parameter named), seeds, batches, url and b64_json answers, the models routes, and errors in OpenAI's shape."""

import base64

import pytest

from segmind_proxy.api.openai_images import translate
from segmind_proxy.domain.catalog import Role, bundled_catalog
from segmind_proxy.domain.errors import RequestInvalid
from segmind_proxy.domain.image_formats import sniff_format
from tests.support.aws import BUCKET, make_tenant
from tests.support.lambda_events import api_event, body_json, header

GENERATIONS = "/v1/images/generations"
SMALL = {"prompt": "a fox in the snow", "size": "256x256"}


def generate(invoke, body, **kwargs):
    return invoke(api_event(body, path=GENERATIONS, **kwargs))


def openai_error(response):
    body = body_json(response)
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


def test_default_answer_is_b64_json_in_openai_shape(invoke, upstream):
    upstream.succeed()
    response = generate(invoke, SMALL | {"seed": 7})
    assert response["statusCode"] == 200
    assert header(response, "Content-Type") == "application/json"
    body = body_json(response)
    assert set(body) == {"created", "data", "output_format", "size"}
    assert isinstance(body["created"], int) and body["size"] == "256x256" and body["output_format"] == "jpeg"
    assert len(body["data"]) == 1 and set(body["data"][0]) == {"b64_json"}
    assert sniff_format(base64.b64decode(body["data"][0]["b64_json"])) == "jpeg"
    assert header(response, "x-seed-value") == "7" and header(response, "x-images-delivered") == "1"
    assert header(response, "x-request-id") and header(response, "x-cache") == "MISS"
    assert header(response, "x-response-mode") == "inline"  # as v1's: the one path delivers for both doors


def test_fields_map_onto_segmind_request_and_identifiers_stay_here(invoke, upstream):
    upstream.succeed()
    body = {
        "model": "stable-diffusion-3.5-turbo",
        "prompt": "a lighthouse",
        "n": 2,
        "size": "512x320",
        "output_format": "webp",
        "output_compression": 60,
        "quality": "auto",
        "background": "opaque",
        "moderation": "low",
        "stream": False,
        "user": "end-user-1",
        "safety_identifier": "hashed-user",
        "negative_prompt": "fog",
        "seed": 5,
        "steps": 6,
        "guidance_scale": 2.5,
        "sampler": "euler",
        "scheduler": "karras",
    }
    response = generate(invoke, body)
    assert response["statusCode"] == 200
    sent = upstream.sent_bodies()[0]
    assert (sent["batch_size"], sent["width"], sent["height"]) == (2, 512, 320)
    assert (sent["image_format"], sent["image_quality"], sent["seed"], sent["steps"]) == ("webp", 60, 5, 6)
    assert (sent["negative_prompt"], sent["guidance_scale"], sent["sampler"], sent["scheduler"]) == (
        "fog",
        2.5,
        "euler",
        "karras",
    )
    assert not {"user", "safety_identifier", "model", "n", "size", "quality"} & set(sent)
    answer = body_json(response)
    assert answer["output_format"] == "webp" and answer["size"] == "512x320" and len(answer["data"]) == 2
    assert all(sniff_format(base64.b64decode(item["b64_json"])) == "webp" for item in answer["data"])


def test_segmind_slug_is_a_model_alias_and_size_auto_is_the_catalog_default(invoke, upstream):
    upstream.succeed()
    response = generate(invoke, {"prompt": "x", "model": "stable-diffusion-3.5-turbo-txt2img", "size": "auto"})
    assert response["statusCode"] == 200
    assert body_json(response)["size"] == "1024x1024"
    assert (upstream.sent_bodies()[0]["width"], upstream.sent_bodies()[0]["height"]) == (1024, 1024)


def test_no_seed_is_a_fresh_image_every_time(invoke, upstream):
    upstream.succeed(times=2)
    first = generate(invoke, SMALL)
    second = generate(invoke, SMALL)
    assert header(first, "x-cache") == header(second, "x-cache") == "BYPASS"
    assert len(upstream.calls()) == 2
    assert upstream.sent_bodies()[0]["seed"] == -1
    assert header(first, "x-seed-value") == "777"  # the seed Segmind used comes back


def test_a_given_seed_is_cached_and_served_without_an_upstream_call(invoke, upstream):
    upstream.succeed()
    first = generate(invoke, SMALL | {"seed": 11})
    again = generate(invoke, SMALL | {"seed": 11})
    assert (header(first, "x-cache"), header(again, "x-cache")) == ("MISS", "HIT")
    assert body_json(again)["data"] == body_json(first)["data"]
    assert len(upstream.calls()) == 1


def test_the_openai_and_segmind_front_doors_share_the_cache(invoke, upstream):
    upstream.succeed()
    generate(invoke, SMALL | {"seed": 12, "output_format": "png"})
    segmind = invoke(
        api_event({"prompt": SMALL["prompt"], "width": 256, "height": 256, "seed": 12, "image_format": "png"})
    )
    assert header(segmind, "x-cache") == "HIT" and len(upstream.calls()) == 1


def test_url_items_are_presigned_urls(invoke, upstream):
    upstream.succeed()
    response = generate(invoke, SMALL | {"n": 3, "response_format": "url"})
    assert response["statusCode"] == 200
    data = body_json(response)["data"]
    assert len(data) == 3 and all(set(item) == {"url"} for item in data)
    assert all("X-Amz-Signature" in item["url"] or "Signature" in item["url"] for item in data)
    assert header(response, "x-images-delivered") == "3" and header(response, "x-response-mode") == "url"


def test_url_items_without_storage_are_b64_json_items_and_logged(invoke, upstream, aws, caplog):
    """As on v1: images that cannot be stored cannot be presigned, so they come back whole rather than lost."""
    aws["s3"].delete_bucket(Bucket=BUCKET)
    upstream.succeed()
    response = generate(invoke, SMALL | {"response_format": "url"})
    assert response["statusCode"] == 200 and header(response, "x-response-mode") == "inline"
    assert [set(item) for item in body_json(response)["data"]] == [{"b64_json"}]
    assert "URL delivery impossible (storage failed); answering inline instead" in caplog.text


def test_b64_json_too_large_for_lambda_answers_url_items(invoke, upstream, monkeypatch):
    monkeypatch.setenv("INLINE_RESPONSE_MAX_BYTES", "20000")
    from segmind_proxy.settings import get_settings

    get_settings.cache_clear()
    upstream.succeed()
    response = generate(invoke, {"prompt": "a fox", "n": 2, "output_format": "png"})
    assert response["statusCode"] == 200
    assert all(set(item) == {"url"} for item in body_json(response)["data"])


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"size": "4096x4096"}, "size"),
        ({"size": "big"}, "size"),
        ({"size": "32x512"}, "size"),
        ({"n": 11}, "n"),
        ({"n": 0}, "n"),
        ({"n": "2"}, "n"),
        ({"output_format": "gif"}, "output_format"),
        ({"output_format": "svg"}, "output_format"),
        ({"output_format": "bmp"}, "output_format"),
        ({"output_format": {}}, "output_format"),
        ({"response_format": ["url"]}, "response_format"),
        ({"quality": {}}, "quality"),
        ({"size": ["256x256"]}, "size"),
        ({"output_compression": 5}, "output_compression"),
        ({"output_compression": 101}, "output_compression"),
        ({"response_format": "bytes"}, "response_format"),
        ({"quality": "high"}, "quality"),
        ({"quality": "hd"}, "quality"),
        ({"quality": "xhigh"}, "quality"),
        ({"quality": "max"}, "quality"),
        ({"style": "vivid"}, "style"),
        ({"background": "transparent"}, "background"),
        ({"moderation": "strict"}, "moderation"),
        ({"stream": True}, "stream"),
        ({"partial_images": 2}, "partial_images"),
        ({"frame_count": 8}, "frame_count"),
        ({"frame_duration_ms": 100}, "frame_duration_ms"),
        ({"complexity": "low"}, "complexity"),
        ({"svg": {"model": "x"}}, "svg"),
        ({"image_format": "png"}, "image_format"),  # Segmind's name is not OpenAI's: unknown here
        ({"batch_size": 2}, "batch_size"),
        ({"temperature": 1}, "temperature"),
        ({"steps": 99}, "steps"),
        ({"sampler": "nope"}, "sampler"),
        ({"seed": -2}, "seed"),
        ({"guidance_scale": 50}, "guidance_scale"),
        ({"user": 5}, "user"),
        ({"prompt": "   "}, "prompt"),
    ],
)
def test_what_cannot_be_honoured_is_refused_naming_the_param(invoke, upstream, extra, param):
    response = generate(invoke, SMALL | extra)
    assert response["statusCode"] == 400
    error = openai_error(response)
    assert error["type"] == "invalid_request_error" and error["param"] == param
    assert param in error["message"] or param in {"size", "n", "output_compression"}
    assert upstream.calls() == []


def test_missing_prompt_and_bad_json_are_openai_shaped(invoke, upstream):
    missing = generate(invoke, {"size": "256x256"})
    assert missing["statusCode"] == 400 and openai_error(missing)["param"] == "prompt"
    broken = invoke(api_event(path=GENERATIONS, raw=b"{not json"))
    assert broken["statusCode"] == 400 and openai_error(broken)["type"] == "invalid_request_error"
    wrong_type = invoke(api_event(SMALL, path=GENERATIONS, headers={"Content-Type": "text/plain"}))
    assert wrong_type["statusCode"] == 415 and openai_error(wrong_type)
    assert upstream.calls() == []


def test_compression_below_the_catalog_minimum_says_why(invoke, upstream):
    error = openai_error(generate(invoke, SMALL | {"output_compression": 0}))
    assert error["param"] == "output_compression" and "at least 10" in error["message"]


def test_unknown_model_is_404_model_not_found(invoke, upstream):
    assert generate(invoke, SMALL | {"model": ["a"]})["statusCode"] == 404  # not a name: no such model either
    response = generate(invoke, SMALL | {"model": "dall-e-3"})
    assert response["statusCode"] == 404
    error = openai_error(response)
    assert (error["code"], error["param"]) == ("model_not_found", "model") and "dall-e-3" in error["message"]
    assert upstream.calls() == []


def test_models_list_and_object(invoke):
    listed = body_json(invoke(api_event(method="GET", path="/v1/models")))
    assert listed["object"] == "list"
    assert [item["id"] for item in listed["data"]] == [model.openai_id for model in bundled_catalog()]
    assert listed["data"][0] == {"id": "flux-1-dev", "object": "model", "created": 1729555200, "owned_by": "segmind"}
    for name in ("stable-diffusion-3.5-turbo", "stable-diffusion-3.5-turbo-txt2img"):
        one = invoke(api_event(method="GET", path=f"/v1/models/{name}"))
        assert one["statusCode"] == 200 and body_json(one)["id"] == "stable-diffusion-3.5-turbo"
    unknown = invoke(api_event(method="GET", path="/v1/models/gpt-image-1"))
    assert unknown["statusCode"] == 404 and openai_error(unknown)["code"] == "model_not_found"


@pytest.mark.parametrize(
    ("method", "path", "openai"),
    [
        ("POST", "/v1/chat/completions", True),
        ("POST", "/v1/images/edits", True),
        ("POST", "/v1/images/variations", True),
        ("POST", "/v1/embeddings", True),
        ("POST", "/v1/completions", True),
        ("POST", "/v1/audio/speech", True),
        ("GET", "/v1/files", True),
        ("GET", "/v1/nothing-here", False),
        ("POST", "/v1/health", False),
    ],
)
def test_other_routes_under_v1_answer_404_in_their_protocol_shape(invoke, method, path, openai):
    event = api_event({"model": "x"}, method=method, path=path)
    event["resource"] = "/v1/{proxy+}"
    response = invoke(event)
    assert response["statusCode"] == 404
    if openai:
        assert openai_error(response)["type"] == "invalid_request_error"
    else:
        assert isinstance(body_json(response)["error"], str)


def test_over_budget_is_429_insufficient_quota_not_to_be_retried(invoke, upstream, tenancy):
    make_tenant(tenancy, budget_images=1)
    upstream.succeed()
    assert generate(invoke, SMALL | {"seed": 1}, api_key_id="key-acme")["statusCode"] == 200
    refused = generate(invoke, SMALL | {"seed": 2}, api_key_id="key-acme")
    assert refused["statusCode"] == 429
    assert openai_error(refused)["code"] == "insufficient_quota"
    assert header(refused, "x-should-retry") == "false"
    assert len(upstream.calls()) == 1


def test_budget_headers_come_back(invoke, upstream, tenancy):
    make_tenant(tenancy, budget_credits=1.0, budget_images=5)
    upstream.succeed()
    response = generate(invoke, SMALL | {"seed": 3}, api_key_id="key-acme")
    assert header(response, "x-budget-remaining-images") == "4"


def test_access_refused_before_routing_is_openai_shaped(invoke, upstream, tenancy):
    make_tenant(tenancy)
    refused = generate(invoke, SMALL, api_key_id="key-unknown")
    assert refused["statusCode"] == 403 and openai_error(refused)["type"] == "permission_error"
    assert upstream.calls() == []


def test_upstream_failures_take_segmind_statuses_in_openai_shape(invoke, upstream):
    upstream.fail(500)
    upstream.fail(500)
    upstream.fail(500)
    response = generate(invoke, SMALL | {"seed": 4})
    assert response["statusCode"] == 502
    assert openai_error(response)["type"] == "server_error"


def test_only_if_cached_miss_is_504_not_to_be_retried(invoke, upstream):
    response = invoke(api_event(SMALL | {"seed": 9}, path=GENERATIONS, headers={"Cache-Control": "only-if-cached"}))
    assert response["statusCode"] == 504
    assert header(response, "x-should-retry") == "false" and header(response, "x-cache") == "MISS"
    assert openai_error(response)["code"] == "not_cached"
    assert upstream.calls() == []


def test_idempotency_key_replays_and_refuses_a_different_body(invoke, upstream, jobs_env):
    make_tenant(jobs_env["registry"], budget_credits=1.0)
    upstream.succeed(times=2)
    headers = {"Idempotency-Key": "order-7"}
    first = generate(invoke, SMALL, api_key_id="key-acme", headers=headers)
    again = generate(invoke, SMALL, api_key_id="key-acme", headers=headers)
    assert first["statusCode"] == again["statusCode"] == 200
    assert body_json(again)["data"] == body_json(first)["data"]
    assert header(again, "x-idempotent-replay") == "true" and len(upstream.calls()) == 1
    reused = generate(invoke, SMALL | {"n": 2}, api_key_id="key-acme", headers=headers)
    assert reused["statusCode"] == 422 and openai_error(reused)["code"] == "idempotency_key_reused"


@pytest.fixture
def edge_reads(monkeypatch):
    """The cache reads started at the edge, alongside the tenant check: (prompt, by_url) each."""
    from segmind_proxy.composition import generation_service

    service, started = generation_service(), []
    prefetch = service.prefetch

    def recorded(request, namespace, by_url):
        started.append((request.prompt, by_url))
        return prefetch(request, namespace, by_url)

    monkeypatch.setattr(service, "prefetch", recorded)
    return started


def test_a_fixed_seed_starts_its_cache_read_at_the_edge_as_v1_does(invoke, upstream, edge_reads):
    upstream.succeed()
    assert header(generate(invoke, SMALL | {"seed": 11}), "x-cache") == "MISS"
    hit = generate(invoke, SMALL | {"seed": 11, "response_format": "url"})
    assert header(hit, "x-cache") == "HIT" and set(body_json(hit)["data"][0]) == {"url"}
    assert edge_reads == [(SMALL["prompt"], False), (SMALL["prompt"], True)]  # url: only checks that they exist


def test_no_seed_or_an_invalid_body_starts_no_cache_read(invoke, upstream, edge_reads):
    upstream.succeed()
    assert header(generate(invoke, SMALL), "x-cache") == "BYPASS"
    assert generate(invoke, SMALL | {"seed": 11, "size": "1x1"})["statusCode"] == 400
    assert generate(invoke, SMALL | {"seed": 11, "model": "dall-e-3"})["statusCode"] == 404
    assert edge_reads == []


def translated(**data):
    return translate({"prompt": "x", **data}, bundled_catalog())


def refused(param, **data):
    with pytest.raises(RequestInvalid) as caught:
        translated(**data)
    assert caught.value.details[0]["field"] == param, caught.value.message
    return caught.value.message


def test_every_model_is_reached_by_its_openai_id_or_its_slug():
    for model in bundled_catalog():
        for name in (model.openai_id, model.slug):
            order = translated(model=name, **({"size": "1024x1024"} if model.field_of(Role.ASPECT_RATIO) else {}))
            assert order.request.model is model


def test_parameters_map_through_each_models_roles():
    flux = translated(model="flux-1-dev", size="1792x1024", n=3, output_format="jpeg", output_compression=60)
    values = flux.request.model_dump()
    assert (values["aspect_ratio"], values["samples"], values["output_format"], values["output_quality"]) == (
        "16:9",
        3,
        "jpg",  # FLUX.1 Dev's name for jpeg
        60,
    )
    schnell = translated(model="flux-1-schnell", size="512x768", sampler_name="heun")
    assert (schnell.request.width, schnell.request.height, schnell.request.sampler_name) == (512, 768, "heun")


def test_a_parameter_a_model_cannot_honour_is_refused_naming_it():
    assert "one image per request" in refused("n", model="seedream-3", size="1024x1024", n=2)
    assert "no quality" in refused("output_compression", model="flux-1-schnell", output_compression=80)
    assert "makes: jpeg" in refused("output_format", model="flux-1-schnell", output_format="png")
    assert "aspect ratios only" in refused("size", model="flux-1-dev", size="1000x100")
    assert "multiple of 8" in refused("size", model="flux-1-schnell", size="513x512")
    assert "FLUX.1 Dev takes" in refused("sampler", model="flux-1-dev", sampler="euler")  # another model's field


def test_without_a_seed_each_call_is_a_fresh_image_drawn_within_the_models_range():
    sd35 = translated()
    assert sd35.request.seed == -1  # its own random seed
    seeds = {translated(model="flux-1-dev").request.seed for _ in range(5)}
    assert len(seeds) > 1 and all(0 <= seed <= 4294967295 for seed in seeds)
    assert all(1 <= translated(model="seedream-3", size="1024x1024").request.seed <= 999999 for _ in range(5))
    assert translated(model="flux-1-dev", seed=7).request.seed == 7


def test_a_models_own_field_named_like_an_openai_parameter_is_the_models():
    assert translated(model="sdxl1.0-txt2img", style="base").request.style == "base"  # SDXL's own style
    assert "no style presets" in refused("style", style="vivid")  # SD 3.5 Turbo has none
