"""Answers say what they carry: the format the bytes are really in (Segmind may answer another than asked), and how
many images came (it may return fewer than `batch_size`), on misses, hits, URLs, replays and v2 results alike."""

import base64
import json
from urllib.parse import urlparse

import pytest
import responses

from local.fake_segmind import render
from segmind_proxy.domain.image_formats import sniff_format
from tests.support.aws import BUCKET, make_tenant
from tests.support.lambda_events import api_event, body_bytes, body_json, header
from tests.support.segmind import SAMPLE, UPSTREAM_URL

SMALL = SAMPLE | {"width": 256, "height": 256}
PNG_ASKED = SMALL | {"image_format": "png"}
SLUG = "stable-diffusion-3.5-turbo-txt2img"


def answer_with(upstream, image_format=None, images=None):
    """Segmind answers 200 with `images` images (default: as many as asked) in `image_format` (default: as asked)."""

    def reply(request):
        body = json.loads(request.body)
        made = body["batch_size"] if images is None else images
        rendered = [
            base64.b64encode(render("x", body["seed"] + i, 64, 64, image_format or body["image_format"], 80)).decode()
            for i in range(made)
        ]
        payload = {"image": rendered[0]} if body["batch_size"] == 1 else {"images": rendered}
        return 200, {"x-seed-value": str(body["seed"])}, json.dumps(payload)

    upstream.mock.add_callback(responses.POST, UPSTREAM_URL, callback=reply)


def served_content_type(aws, url):
    """What S3 answers a GET of this presigned URL with (its object's Content-Type)."""
    return aws["s3"].head_object(Bucket=BUCKET, Key=urlparse(url).path.lstrip("/"))["ContentType"]


def test_a_hit_is_labelled_with_the_format_its_bytes_are_in(invoke, upstream):
    answer_with(upstream, image_format="jpeg")  # a PNG was asked for
    miss = invoke(api_event(PNG_ASKED))
    hit = invoke(api_event(PNG_ASKED))
    assert header(hit, "x-cache") == "HIT" and body_bytes(hit) == body_bytes(miss)
    assert sniff_format(body_bytes(hit)) == "jpeg"
    assert header(miss, "Content-Type") == header(hit, "Content-Type") == "image/jpeg"
    assert len(upstream.calls()) == 1


def test_a_hit_by_url_names_the_true_format_and_serves_it(invoke, upstream, aws):
    answer_with(upstream, image_format="jpeg")
    invoke(api_event(PNG_ASKED))
    hit = body_json(invoke(api_event(PNG_ASKED, headers={"x-response-mode": "url"})))
    assert hit["cache"] == "HIT" and hit["image_format"] == "jpeg"
    assert [image["content_type"] for image in hit["images"]] == ["image/jpeg"]
    assert served_content_type(aws, hit["images"][0]["url"]) == "image/jpeg"


def test_an_idempotent_replay_is_labelled_with_the_true_format(invoke, upstream, jobs_env):
    make_tenant(jobs_env["registry"], budget_credits=1.0)
    answer_with(upstream, image_format="webp")
    event = api_event(PNG_ASKED | {"seed": 11}, api_key_id="key-acme", headers={"Idempotency-Key": "format-1"})
    first, replay = invoke(event), invoke(event)
    assert header(replay, "x-idempotent-replay") == "true"
    assert header(first, "Content-Type") == header(replay, "Content-Type") == "image/webp"


def test_a_v2_result_names_the_true_format(invoke, upstream, jobs_env, worker, aws):
    make_tenant(jobs_env["registry"], budget_credits=1.0)
    answer_with(upstream, image_format="jpeg")
    path = f"/v2/{SLUG}"
    job = body_json(invoke(api_event(PNG_ASKED, path=path, api_key_id="key-acme", headers={"Host": "gw.example"})))
    worker()
    result = body_json(invoke(api_event(method="GET", path=f"/v2/requests/{job['request_id']}", api_key_id="key-acme")))
    assert result["status"] == "COMPLETED" and result["metrics"]["content_type"] == "image/jpeg"
    assert served_content_type(aws, result["output"]) == "image/jpeg"


def usage(invoke):
    return body_json(invoke(api_event(method="GET", path="/v1/usage", api_key_id="key-acme")))


@pytest.mark.parametrize("delivered", [1, 2])
def test_a_short_batch_keeps_its_shape_says_how_many_came_and_charges_for_those(invoke, upstream, tenancy, delivered):
    make_tenant(tenancy, budget_credits=1.0)
    answer_with(upstream, images=delivered)
    answer = invoke(api_event(SMALL | {"batch_size": 3, "base64": True}, api_key_id="key-acme"))
    assert answer["statusCode"] == 200
    body = body_json(answer)
    assert len(body["images"]) == delivered and body["image"] == body["images"][0]
    assert header(answer, "x-images-delivered") == str(delivered)
    figures = usage(invoke)
    assert figures["images_generated"] == delivered and figures["credits_reserved"] == 0
    assert figures["credits_spent"] == pytest.approx(0.012 * delivered / 3)  # the estimate for 3 is 0.012


def test_a_short_batch_by_url_lists_what_came(invoke, upstream):
    answer_with(upstream, images=2)
    answer = invoke(api_event(SMALL | {"batch_size": 4}))  # raw with a batch: answered by URL
    assert header(answer, "x-images-delivered") == "2"
    assert len(body_json(answer)["images"]) == 2


def test_a_v2_job_with_a_short_batch_completes_with_what_came(invoke, upstream, jobs_env, worker):
    make_tenant(jobs_env["registry"], budget_credits=1.0)
    answer_with(upstream, images=1)
    body = SMALL | {"batch_size": 2, "seed": -1}  # a random seed: its images go to the job's own set
    job = body_json(invoke(api_event(body, path=f"/v2/{SLUG}", api_key_id="key-acme", headers={"Host": "gw.x"})))
    assert worker() == []
    result = body_json(invoke(api_event(method="GET", path=f"/v2/requests/{job['request_id']}", api_key_id="key-acme")))
    assert result["status"] == "COMPLETED" and result["metrics"]["images"] == 1 and len(result["outputs"]) == 1
    figures = usage(invoke)
    assert figures["images_generated"] == 1 and figures["credits_reserved"] == 0
    assert len(upstream.calls()) == 1


def test_a_full_single_image_answer_has_no_batch_list(invoke, upstream):
    answer_with(upstream)
    body = body_json(invoke(api_event(SMALL | {"base64": True})))
    assert set(body) == {"image"}
