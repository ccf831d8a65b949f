"""v2 jobs through the real handlers: the API submits, the worker (fed SQS events) runs, the API reads back."""

import json
import time

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from segmind_proxy.adapters.dynamo_jobs import JobStore
from segmind_proxy.adapters.webhooks import verify_legacy
from segmind_proxy.domain.jobs import JobStatus
from segmind_proxy.domain.tenants import new_webhook_secret
from tests.support.aws import BUCKET, JOBS_TABLE, aws_failing, make_tenant, order_against_tenant_check
from tests.support.lambda_events import api_event, body_json, header
from tests.support.segmind import SAMPLE

SLUG = "stable-diffusion-3.5-turbo-txt2img"
SMALL = SAMPLE | {"width": 256, "height": 256}


def submit(invoke, body=SMALL, key_id="key-acme", headers=None):
    event = api_event(body, path=f"/v2/{SLUG}", api_key_id=key_id, headers={"Host": "gw.example", **(headers or {})})
    return invoke(event)


def get(invoke, path, key_id="key-acme"):
    return invoke(api_event(method="GET", path=path, api_key_id=key_id))


def test_submit_then_worker_then_result(invoke, upstream, jobs_env, worker):
    make_tenant(jobs_env["registry"], budget_credits=1.0)
    upstream.succeed()
    answer = submit(invoke)
    assert answer["statusCode"] == 200
    job = body_json(answer)
    job_id = job["request_id"]
    assert job["status"] == "QUEUED"
    assert job["status_url"] == f"https://gw.example/prod/v2/requests/{job_id}/status"
    assert (
        job["poll_url"] == job["status_url"] and job["response_url"] == f"https://gw.example/prod/v2/requests/{job_id}"
    )
    assert body_json(get(invoke, f"/v2/requests/{job_id}/status"))["status"] == "QUEUED"
    assert worker() == []
    assert body_json(get(invoke, f"/v2/requests/{job_id}/status")) == {"request_id": job_id, "status": "COMPLETED"}
    result = body_json(get(invoke, f"/v2/requests/{job_id}"))
    assert result["status"] == "COMPLETED" and "X-Amz-Signature" in result["output"]
    assert result["outputs"] == [result["output"]] and result["metrics"]["images"] == 1
    usage = body_json(get(invoke, "/v1/usage"))
    assert (usage["images_generated"], usage["credits_spent"], usage["credits_reserved"]) == (1, 0.004, 0)
    assert len(upstream.calls()) == 1


def test_budget_is_reserved_at_submit(invoke, upstream, jobs_env):
    make_tenant(jobs_env["registry"], budget_images=1)
    assert submit(invoke)["statusCode"] == 200
    refused = submit(invoke, SMALL | {"seed": 5})
    assert refused["statusCode"] == 402
    usage = body_json(get(invoke, "/v1/usage"))
    assert usage["remaining"]["images"] == 0
    assert (usage["requests"], usage["rejected_requests"]) == (2, 1)


def test_a_submit_that_hits_is_answered_before_it_is_counted(invoke, upstream, jobs_env, later):
    make_tenant(jobs_env["registry"], budget_credits=1.0)
    upstream.succeed()
    assert invoke(api_event(SMALL, api_key_id="key-acme"))["statusCode"] == 200
    later.run()  # cached
    assert body_json(submit(invoke))["status"] == "COMPLETED"
    assert body_json(get(invoke, "/v1/usage"))["cache_hits"] == 0
    later.run()
    usage = body_json(get(invoke, "/v1/usage"))
    assert (usage["requests"], usage["cache_hits"], usage["credits_spent"]) == (2, 1, 0.004)


def test_a_refused_submit_is_answered_before_it_is_counted(invoke, upstream, jobs_env, later):
    make_tenant(jobs_env["registry"], budget_images=1)
    assert submit(invoke, SMALL | {"batch_size": 2})["statusCode"] == 402
    assert body_json(get(invoke, "/v1/usage"))["rejected_requests"] == 0
    later.run()
    assert body_json(get(invoke, "/v1/usage"))["rejected_requests"] == 1


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        (["create"], "job store is unavailable"),
        (["send"], "job queue is unavailable"),
        (["send", "fail"], "job queue is unavailable"),
    ],
)
def test_a_submit_that_cannot_be_recorded_or_queued_is_503_and_reserves_nothing(
    invoke, upstream, jobs_env, monkeypatch, broken, message
):
    def job_record(params):  # not a lease nor an idempotency record, in the same table
        item = params.get("Item") or params.get("Key") or {}
        return params.get("TableName") == JOBS_TABLE and str(item.get("pk", "")).startswith("JOB#")

    make_tenant(jobs_env["registry"], budget_images=2)
    if "create" in broken:
        aws_failing(monkeypatch, "PutItem", job_record)
    if "fail" in broken:
        aws_failing(monkeypatch, "UpdateItem", job_record)
    if "send" in broken:
        aws_failing(monkeypatch, "SendMessage")
    refused = submit(invoke)
    assert refused["statusCode"] == 503 and message in body_json(refused)["error"]
    usage = body_json(get(invoke, "/v1/usage"))
    assert (usage["credits_reserved"], usage["remaining"]["images"]) == (0, 2)
    assert upstream.calls() == []


def test_a_cache_hit_at_submit_completes_at_once_without_upstream(invoke, upstream, jobs_env):
    make_tenant(jobs_env["registry"])
    upstream.succeed()
    invoke(api_event(SMALL, api_key_id="key-acme"))  # v1 fills the cache
    job = body_json(submit(invoke))
    assert job["status"] == "COMPLETED"
    assert "X-Amz-Signature" in body_json(get(invoke, f"/v2/requests/{job['request_id']}"))["output"]
    assert len(upstream.calls()) == 1
    assert jobs_env["sqs"].receive_message(QueueUrl=jobs_env["queue"]).get("Messages") is None


def test_jobs_belong_to_their_tenant(invoke, upstream, jobs_env):
    make_tenant(jobs_env["registry"], name="acme", key_id="key-acme")
    make_tenant(jobs_env["registry"], name="globex", key_id="key-globex")
    job_id = body_json(submit(invoke))["request_id"]
    for path in (f"/v2/requests/{job_id}", f"/v2/requests/{job_id}/status"):
        other = get(invoke, path, key_id="key-globex")
        assert other["statusCode"] == 404 and job_id in body_json(other)["error"]
    assert get(invoke, "/v2/requests/doesnotexist")["statusCode"] == 404
    too_long = get(invoke, "/v2/requests/" + "a" * 3000)  # no lookup, and only an id's length echoed
    assert too_long["statusCode"] == 404 and len(body_json(too_long)["error"]) < 120


def test_validation_is_v1s(invoke, upstream, jobs_env):
    make_tenant(jobs_env["registry"])
    bad = submit(invoke, {"prompt": "x", "steps": 0, "colour": 1})
    assert bad["statusCode"] == 400
    assert "'steps'" in body_json(bad)["error"] and "colour" in body_json(bad)["error"]


def test_a_submit_with_a_key_given_twice_is_400_naming_it_and_makes_no_job(invoke, upstream, jobs_env):
    import boto3

    make_tenant(jobs_env["registry"], budget_credits=1.0)
    raw = b'{"prompt": "x", "width": 256, "height": 256, "seed": 1, "seed": 2}'
    refused = invoke(api_event(raw=raw, path=f"/v2/{SLUG}", api_key_id="key-acme", headers={"Host": "gw.example"}))
    assert refused["statusCode"] == 400
    assert body_json(refused)["error"] == "Duplicate key 'seed' in the JSON body"
    assert boto3.resource("dynamodb").Table(JOBS_TABLE).scan()["Items"] == []
    assert jobs_env["sqs"].receive_message(QueueUrl=jobs_env["queue"]).get("Messages") is None
    usage = body_json(get(invoke, "/v1/usage"))
    assert (usage["requests"], usage["rejected_requests"], usage["credits_reserved"]) == (1, 1, 0)
    assert upstream.calls() == []


def test_non_retryable_upstream_error_fails_the_job_and_releases_budget(invoke, upstream, jobs_env, worker):
    make_tenant(jobs_env["registry"], budget_credits=1.0)
    upstream.fail(400, {"error": "nsfw prompt"})
    job_id = body_json(submit(invoke))["request_id"]
    assert worker() == []
    status = get(invoke, f"/v2/requests/{job_id}/status")
    assert status["statusCode"] == 422
    assert body_json(status)["status"] == "FAILED" and "nsfw" in body_json(status)["error"]
    usage = body_json(get(invoke, "/v1/usage"))
    assert usage["credits_reserved"] == 0 and usage["credits_spent"] == 0


def test_retryable_errors_retry_then_succeed_charging_once(invoke, upstream, jobs_env, worker, logs):
    make_tenant(jobs_env["registry"], budget_credits=1.0)
    for _ in range(3):
        upstream.fail(503)
    upstream.succeed()
    job_id = body_json(submit(invoke))["request_id"]
    logs.readouterr()
    failures = worker()
    assert len(failures) == 1  # left for SQS to deliver again, after the backoff
    logged = [json.loads(line) for line in logs.readouterr().out.splitlines() if "SQS delivers it again" in line]
    assert [(e["job_id"], e["kind"], e["attempt"], e["retry_in_s"]) for e in logged] == [
        (job_id, "server_error", 1, 20)
    ]  # operators can see why a job came back
    assert body_json(get(invoke, f"/v2/requests/{job_id}/status"))["status"] == "QUEUED"
    _make_visible(jobs_env)
    assert worker() == []
    assert body_json(get(invoke, f"/v2/requests/{job_id}/status"))["status"] == "COMPLETED"
    usage = body_json(get(invoke, "/v1/usage"))
    assert (usage["images_generated"], usage["credits_reserved"], usage["failed_generations"]) == (1, 0, 1)


def _make_visible(jobs_env):
    """Skip the wait: the message the worker left (backoff or crash) becomes visible now."""
    jobs_env["sqs"].change_message_visibility(
        QueueUrl=jobs_env["queue"], ReceiptHandle=jobs_env["last_receipt"], VisibilityTimeout=0
    )


def test_dead_lettered_job_is_failed_and_its_budget_released(invoke, upstream, jobs_env, worker):
    make_tenant(jobs_env["registry"], budget_credits=1.0)
    job_id = body_json(submit(invoke))["request_id"]
    body = json.dumps({"job_id": job_id})
    jobs_env["sqs"].send_message(QueueUrl=jobs_env["dlq"], MessageBody=body)
    assert worker("dlq") == []
    status = body_json(get(invoke, f"/v2/requests/{job_id}/status"))
    assert status["status"] == "FAILED" and "gave up" in status["error"]
    assert body_json(get(invoke, "/v1/usage"))["credits_reserved"] == 0


# no-cache: still its own images, not the cache's; no-store: its own, kept outside the cache; a random seed: the
# one the job drew, the same on every attempt
@pytest.mark.parametrize(
    ("cache_control", "seed"), [(None, 42), ("no-cache", 42), ("no-store", 42), (None, -1), ("no-store", -1)]
)
def test_a_crashed_worker_leaves_the_job_retryable_and_it_is_charged_once(
    invoke, upstream, jobs_env, worker, monkeypatch, cache_control, seed
):
    import boto3

    make_tenant(jobs_env["registry"], budget_credits=1.0)
    upstream.succeed(seed_header=4242, times=2)
    headers = {"Cache-Control": cache_control} if cache_control else None
    job_id = body_json(submit(invoke, SMALL | {"seed": seed}, headers=headers))["request_id"]

    def crash(*args, **kwargs):
        raise SystemExit("worker killed")  # dies after generating and storing, before recording the result

    monkeypatch.setattr(JobStore, "complete", crash)
    with pytest.raises(SystemExit):
        worker()
    monkeypatch.undo()
    jobs = JobStore(JOBS_TABLE, lambda: boto3.resource("dynamodb"))
    assert jobs.get(job_id).status is JobStatus.PROCESSING
    # The message comes back after the visibility timeout; meanwhile the dead worker's lease runs out.
    boto3.resource("dynamodb").Table(JOBS_TABLE).update_item(
        Key={"pk": f"JOB#{job_id}"}, UpdateExpression="SET processing_until = :t", ExpressionAttributeValues={":t": 1}
    )
    _make_visible(jobs_env)
    assert worker() == []
    assert jobs.get(job_id).status is JobStatus.COMPLETED
    assert len(upstream.calls()) == 1  # the stored images were found: no second call
    usage = body_json(get(invoke, "/v1/usage"))
    # The images its dead attempt generated are charged once: neither twice nor, as a cache hit, never.
    assert (usage["credits_reserved"], usage["credits_spent"], usage["images_generated"]) == (0, 0.004, 1)
    assert usage["cache_hits"] == 0
    result = body_json(get(invoke, f"/v2/requests/{job_id}"))
    # As the first attempt would have answered: looked up and missed, or generated without looking.
    assert result["metrics"]["cache"] == ("MISS" if cache_control != "no-cache" and seed != -1 else "BYPASS")
    asked = json.loads(upstream.calls()[0].request.body)["seed"]
    assert result["metrics"]["seed"] == asked >= 0 and (seed == -1 or asked == seed)  # the seed of its images


def test_another_requests_images_found_by_a_job_are_still_free(invoke, upstream, jobs_env, worker):
    make_tenant(jobs_env["registry"], budget_credits=1.0)
    upstream.succeed()
    job_id = body_json(submit(invoke, SMALL | {"seed": 77}))["request_id"]
    invoke(api_event(SMALL | {"seed": 77}, api_key_id="key-acme"))  # v1 generates them first
    assert worker() == []
    result = body_json(get(invoke, f"/v2/requests/{job_id}"))
    assert result["status"] == "COMPLETED" and result["metrics"]["cache"] == "HIT"
    usage = body_json(get(invoke, "/v1/usage"))
    assert (usage["images_generated"], usage["cache_hits"], usage["credits_reserved"]) == (1, 1, 0)


def test_a_redelivery_while_another_worker_holds_the_job_comes_back_later(invoke, upstream, jobs_env, worker):
    import boto3

    make_tenant(jobs_env["registry"])
    job_id = body_json(submit(invoke))["request_id"]
    boto3.resource("dynamodb").Table(JOBS_TABLE).update_item(
        Key={"pk": f"JOB#{job_id}"},
        UpdateExpression="SET #s = :p, processing_until = :t",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":p": "PROCESSING", ":t": int(time.time() + 30)},
    )
    assert len(worker()) == 1  # not deleted: delivered again once the holder's lease has passed
    assert upstream.calls() == []


def test_webhook_is_signed_with_the_tenants_secret(invoke, upstream, jobs_env, worker, monkeypatch):
    import responses

    tenant = make_tenant(jobs_env["registry"])
    monkeypatch.setattr(
        "segmind_proxy.adapters.webhooks._addresses", lambda host: [__import__("ipaddress").ip_address("93.184.216.34")]
    )
    monkeypatch.setattr("segmind_proxy.adapters.webhooks.BACKOFF_SECONDS", (0, 0))
    upstream.succeed()
    upstream.mock.add(responses.POST, "https://hooks.example/done", status=500)
    upstream.mock.add(responses.POST, "https://hooks.example/done", status=204)
    job_id = body_json(submit(invoke, headers={"x-webhook-url": "https://hooks.example/done"}))["request_id"]
    worker()
    calls = [c for c in upstream.mock.calls if c.request.url == "https://hooks.example/done"]
    assert len(calls) == 2  # retried after the 500
    delivered = calls[-1].request
    payload = Webhook(tenant.webhook_secret).verify(delivered.body, dict(delivered.headers))  # Standard Webhooks
    with pytest.raises(WebhookVerificationError):
        Webhook(new_webhook_secret()).verify(delivered.body, dict(delivered.headers))
    assert calls[0].request.headers["webhook-id"] == delivered.headers["webhook-id"] == f"msg_{job_id}_completed"
    assert verify_legacy(tenant.webhook_secret, delivered.body, delivered.headers["x-webhook-signature"])  # deprecated
    assert not verify_legacy("whsec_wrong", delivered.body, delivered.headers["x-webhook-signature"])
    assert payload["request_id"] == job_id and payload["status"] == "COMPLETED" and payload["output"].startswith("http")


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example/x",
        "https://127.0.0.1/x",
        "https://10.0.0.8/x",
        "https://169.254.169.254/x",
        "https://[::1]/x",
        "https://[64:ff9b::7f00:1]/x",  # NAT64 of 127.0.0.1
        "https://[2002:a9fe:a9fe::]/x",  # 6to4 of 169.254.169.254
        "ftp://x",
    ],
)
def test_webhook_urls_must_be_public_https(invoke, upstream, jobs_env, url):
    make_tenant(jobs_env["registry"])
    refused = submit(invoke, headers={"x-webhook-url": url})
    assert refused["statusCode"] == 400
    assert "x-webhook-url" in body_json(refused)["error"]


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("https://\xc2\x84/x", "printable ASCII"),  # as API Gateway hands on the bytes C2 84 (each as a character)
        ("https://hooks\u200b.example/x", "printable ASCII"),  # a zero-width space in the host
        ("https://[::1", "not a valid URL"),  # an unclosed IPv6 bracket
        ("https://a..b/x", "not a valid host name"),  # an empty label
        ("https://hooks.example:99999/x", "Port out of range"),
        ("https://-hooks.example/x", "not a valid host name"),
    ],
)
def test_a_malformed_webhook_url_is_a_400_naming_the_header_and_makes_no_job(invoke, upstream, jobs_env, url, says):
    make_tenant(jobs_env["registry"])
    refused = submit(invoke, headers={"x-webhook-url": url})
    assert refused["statusCode"] == 400
    message = body_json(refused)["error"]
    assert "'x-webhook-url'" in message and says in message
    assert jobs_env["sqs"].receive_message(QueueUrl=jobs_env["queue"]).get("Messages", []) == []


def test_a_known_keys_submit_checks_the_cache_while_its_tenant_is_checked(invoke, upstream, jobs_env):
    from segmind_proxy.domain.tenants import TenantStatus

    tenant = make_tenant(jobs_env["registry"])
    upstream.succeed()
    invoke(api_event(SMALL, api_key_id="key-acme"))  # v1 fills the cache; the container learns the key
    order = order_against_tenant_check("HeadObject")
    job = body_json(submit(invoke))
    assert job["status"] == "COMPLETED" and len(upstream.calls()) == 1
    assert order[:2] == ["cache read", "tenant check done"]
    # ...but the tenant check still decides.
    tenant.status = TenantStatus.SUSPENDED
    jobs_env["registry"].update(tenant)
    refused = submit(invoke)
    assert refused["statusCode"] == 403 and "suspended" in body_json(refused)["error"]


@pytest.mark.parametrize("queue", ["queue", "dlq"])
@pytest.mark.parametrize("body", ["not json", '{"no": "job"}', "[1]"])
def test_a_message_naming_no_job_is_dropped_not_redelivered_forever(jobs_env, worker, logs, queue, body):
    jobs_env["sqs"].send_message(QueueUrl=jobs_env[queue], MessageBody=body)
    assert worker(queue) == []  # succeeded, so the event source mapping deletes it
    assert "Dropped a queue message that names no job" in logs.readouterr().out


def test_cache_control_given_at_submit_is_the_workers(invoke, upstream, jobs_env, worker):
    make_tenant(jobs_env["registry"], name="acme", key_id="key-acme")
    upstream.succeed(times=4)
    assert submit(invoke)["statusCode"] == 200 and worker() == []
    # no-cache: regenerated by the worker, not served the images the first job cached
    again = body_json(submit(invoke, headers={"Cache-Control": "no-cache"}))
    assert again["status"] == "QUEUED" and worker() == []
    assert body_json(get(invoke, f"/v2/requests/{again['request_id']}"))["status"] == "COMPLETED"
    assert len(upstream.calls()) == 2
    # no-store: the worker keeps the images only to back the job's URLs, not in the shared cache
    assert submit(invoke, SMALL | {"seed": 7}, headers={"Cache-Control": "no-store"})["statusCode"] == 200
    assert worker() == []
    assert len(upstream.calls()) == 3
    v1 = invoke(api_event(SMALL | {"seed": 7}, api_key_id="key-acme"))
    assert v1["statusCode"] == 200 and header(v1, "x-cache") == "MISS"
    assert len(upstream.calls()) == 4


def test_only_if_cached_submits_a_hit_and_refuses_a_miss_without_a_job(invoke, upstream, jobs_env, worker):
    make_tenant(jobs_env["registry"], name="acme", key_id="key-acme", budget_credits=1.0)
    upstream.succeed()
    refused = submit(invoke, headers={"Cache-Control": "only-if-cached"})
    assert refused["statusCode"] == 504 and "not in the cache" in body_json(refused)["error"]
    assert jobs_env["sqs"].receive_message(QueueUrl=jobs_env["queue"]).get("Messages") is None
    assert body_json(get(invoke, "/v1/usage"))["credits_reserved"] == 0
    assert submit(invoke)["statusCode"] == 200 and worker() == []
    hit = body_json(submit(invoke, headers={"Cache-Control": "only-if-cached"}))
    assert hit["status"] == "COMPLETED" and len(upstream.calls()) == 1


def test_a_result_whose_images_expired_is_410_not_dead_urls(invoke, upstream, jobs_env, worker, monkeypatch):
    import boto3

    make_tenant(jobs_env["registry"], name="acme", key_id="key-acme")
    upstream.succeed()
    job_id = body_json(submit(invoke))["request_id"]
    assert worker() == []
    assert get(invoke, f"/v2/requests/{job_id}")["statusCode"] == 200
    with monkeypatch.context() as storage_down:  # cannot tell: the URLs are handed out, as before the check
        aws_failing(storage_down, "HeadObject")
        assert "X-Amz-Signature" in body_json(get(invoke, f"/v2/requests/{job_id}"))["output"]
    s3 = boto3.client("s3")
    for listed in s3.list_objects_v2(Bucket=BUCKET)["Contents"]:  # what the bucket's lifecycle rule does
        s3.delete_object(Bucket=BUCKET, Key=listed["Key"])
    expired = get(invoke, f"/v2/requests/{job_id}")
    assert expired["statusCode"] == 410 and "expired from storage" in body_json(expired)["error"]
    assert body_json(get(invoke, f"/v2/requests/{job_id}/status"))["status"] == "COMPLETED"


def test_a_job_status_while_the_job_store_is_down_is_503(invoke, upstream, jobs_env, monkeypatch):
    make_tenant(jobs_env["registry"])
    job_id = body_json(submit(invoke))["request_id"]
    aws_failing(monkeypatch, "GetItem", lambda params: params.get("TableName") == JOBS_TABLE)
    for path in (f"/v2/requests/{job_id}/status", f"/v2/requests/{job_id}"):
        answer = get(invoke, path)
        assert answer["statusCode"] == 503, path
        assert body_json(answer)["error"] == "The gateway's job store is unavailable; retry shortly"


def test_a_submit_reads_no_response_mode(invoke, upstream, jobs_env):
    """v2's result is always URLs: v1's x-response-mode header means nothing to it, so it is not checked either."""
    make_tenant(jobs_env["registry"])
    submitted = submit(invoke, headers={"x-response-mode": "no-such-mode"})
    assert submitted["statusCode"] == 200 and body_json(submitted)["status"] == "QUEUED"
