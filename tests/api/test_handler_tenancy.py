"""The handler with tenants: identification from apiKeyId only, budgets, free hits, usage, isolation, origins."""

import json

import pytest

from segmind_proxy.adapters.dynamo_usage import Meter
from segmind_proxy.domain.tenants import TenantStatus
from tests.support.aws import TENANTS_TABLE, make_tenant, order_against_tenant_check
from tests.support.lambda_events import api_event, body_json, header
from tests.support.segmind import SAMPLE, SLUG

SMALL = SAMPLE | {"width": 512, "height": 512}  # 0.26 MP: the 0.004-credit tier of the model's price


def usage_of(invoke, key_id):
    return body_json(invoke(api_event(method="GET", path="/v1/usage", api_key_id=key_id)))


def test_generation_is_metered_and_hits_are_free(invoke, upstream, tenancy):
    make_tenant(tenancy, budget_credits=1.0, budget_images=5)
    upstream.succeed()
    miss = invoke(api_event(SMALL, api_key_id="key-acme"))
    assert header(miss, "x-budget-remaining-credits") == "0.996"
    assert header(miss, "x-budget-remaining-images") == "4"
    hit = invoke(api_event(SMALL, api_key_id="key-acme"))
    assert header(hit, "x-cache") == "HIT"
    assert header(hit, "x-budget-remaining-credits") == "0.996"
    usage = usage_of(invoke, "key-acme")
    assert (usage["requests"], usage["cache_hits"], usage["images_generated"]) == (2, 1, 1)
    assert usage["credits_spent"] == pytest.approx(0.004)
    assert usage["remaining"] == {"credits": pytest.approx(0.996), "images": 4}
    assert usage["budget"] == {"credits": 1.0, "images": 5}


def test_an_inline_miss_is_answered_before_its_ledger_record_and_with_its_figures(invoke, upstream, tenancy, later):
    tenant = make_tenant(tenancy, budget_credits=1.0, budget_images=5)
    upstream.succeed()
    miss = invoke(api_event(SMALL, api_key_id="key-acme"))
    assert (header(miss, "x-budget-remaining-credits"), header(miss, "x-budget-remaining-images")) == ("0.996", "4")
    usage = Meter(TENANTS_TABLE).usage(tenant.tenant_id)
    assert (usage.credits_spent, usage.images_generated, usage.credits_committed) == (0, 0, pytest.approx(0.004))
    later.run()  # the answer has gone: the settlement and the cache write follow it
    usage = Meter(TENANTS_TABLE).usage(tenant.tenant_id)
    assert (usage.credits_spent, usage.images_generated, usage.upstream_calls) == (pytest.approx(0.004), 1, 1)
    assert usage.remaining(tenant) == {"credits": pytest.approx(0.996), "images": 4}


def test_a_hit_is_answered_with_its_figures_before_it_is_counted(invoke, upstream, tenancy, later):
    tenant = make_tenant(tenancy, budget_credits=1.0, budget_images=5)
    upstream.succeed()
    invoke(api_event(SMALL, api_key_id="key-acme"))
    later.run()
    hit = invoke(api_event(SMALL, api_key_id="key-acme"))
    assert header(hit, "x-cache") == "HIT"
    assert (header(hit, "x-budget-remaining-credits"), header(hit, "x-budget-remaining-images")) == ("0.996", "4")
    assert Meter(TENANTS_TABLE).usage(tenant.tenant_id).cache_hits == 0
    later.run()
    usage = Meter(TENANTS_TABLE).usage(tenant.tenant_id)
    assert (usage.requests, usage.cache_hits, usage.credits_spent) == (2, 1, pytest.approx(0.004))


def test_a_hit_for_a_key_new_to_the_container_is_counted_before_it_goes(invoke, upstream, tenancy, later):
    """Its tenant is unknown here, so its month's usage could not be read with the profile in one round trip."""
    from segmind_proxy.composition import tenant_registry

    tenant = make_tenant(tenancy, budget_credits=1.0)
    upstream.succeed()
    invoke(api_event(SMALL, api_key_id="key-acme"))
    later.run()
    tenant_registry()._key_owner.clear()  # as in a fresh container
    hit = invoke(api_event(SMALL, api_key_id="key-acme"))
    assert header(hit, "x-cache") == "HIT" and header(hit, "x-budget-remaining-credits") == "0.996"
    assert later.tasks == [] and Meter(TENANTS_TABLE).usage(tenant.tenant_id).cache_hits == 1


def test_a_refusal_is_answered_before_it_is_counted(invoke, upstream, tenancy, later):
    tenant = make_tenant(tenancy, budget_credits=1.0)
    refused = invoke(api_event({"prompt": "x", "steps": 99}, api_key_id="key-acme"))
    assert refused["statusCode"] == 400 and Meter(TENANTS_TABLE).usage(tenant.tenant_id).rejected_requests == 0
    later.run()
    assert Meter(TENANTS_TABLE).usage(tenant.tenant_id).rejected_requests == 1


def test_a_url_answer_is_settled_before_it_goes(invoke, upstream, tenancy, later):
    tenant = make_tenant(tenancy, budget_credits=1.0)
    upstream.succeed()
    answer = invoke(api_event(SMALL, api_key_id="key-acme", headers={"x-response-mode": "url"}))
    assert answer["statusCode"] == 200 and later.tasks == []
    assert Meter(TENANTS_TABLE).usage(tenant.tenant_id).credits_spent == pytest.approx(0.004)


def test_over_budget_is_402_with_no_upstream_call(invoke, upstream, tenancy):
    make_tenant(tenancy, budget_images=1)
    upstream.succeed()
    invoke(api_event(SMALL, api_key_id="key-acme"))
    refused = invoke(api_event(SMALL | {"seed": 2}, api_key_id="key-acme"))
    assert refused["statusCode"] == 402
    assert "budget" in body_json(refused)["error"]
    assert len(upstream.calls()) == 1
    # a cache hit is still served: it costs nothing
    assert invoke(api_event(SMALL, api_key_id="key-acme"))["statusCode"] == 200
    usage = usage_of(invoke, "key-acme")  # the refusal counts, as rejected, never charged
    assert (usage["requests"], usage["rejected_requests"], usage["cache_hits"], usage["images_generated"]) == (
        3,
        1,
        1,
        1,
    )


def test_failed_generation_is_not_charged(invoke, upstream, tenancy):
    make_tenant(tenancy, budget_credits=1.0)
    for _ in range(3):
        upstream.fail(500)
    assert invoke(api_event(SMALL, api_key_id="key-acme"))["statusCode"] == 502
    usage = usage_of(invoke, "key-acme")
    assert usage["credits_spent"] == 0 and usage["credits_reserved"] == 0
    assert usage["failed_generations"] == 1


def test_invalid_requests_are_counted_not_charged(invoke, upstream, tenancy):
    make_tenant(tenancy, budget_credits=1.0)
    invoke(api_event({"prompt": "x", "steps": 99}, api_key_id="key-acme"))
    usage = usage_of(invoke, "key-acme")
    assert (usage["requests"], usage["rejected_requests"], usage["credits_spent"]) == (1, 1, 0)


def test_a_key_given_twice_is_counted_as_rejected_and_not_charged(invoke, upstream, tenancy):
    make_tenant(tenancy, budget_credits=1.0)
    refused = invoke(api_event(raw=b'{"prompt": "x", "seed": 1, "seed": 2}', api_key_id="key-acme"))
    assert refused["statusCode"] == 400 and "'seed'" in body_json(refused)["error"]
    usage = usage_of(invoke, "key-acme")
    assert (usage["requests"], usage["rejected_requests"], usage["credits_spent"], usage["credits_reserved"]) == (
        1,
        1,
        0,
        0,
    )
    assert upstream.calls() == []


def test_tenant_is_identified_only_by_api_gateway_key_id(invoke, upstream, tenancy):
    make_tenant(tenancy, name="acme", key_id="key-acme")
    make_tenant(tenancy, name="globex", key_id="key-globex")
    event = api_event(method="GET", path="/v1/usage", api_key_id="key-acme", headers={"x-tenant-id": "globex"})
    assert body_json(invoke(event))["name"] == "acme"
    event["queryStringParameters"] = {"tenant": "globex"}
    refused = invoke(event)  # not read, and refused as unknown
    assert refused["statusCode"] == 400 and "globex" not in json.dumps(body_json(refused))


def test_tenants_never_see_each_others_images_or_usage(invoke, upstream, tenancy, aws):
    make_tenant(tenancy, name="acme", key_id="key-acme")
    make_tenant(tenancy, name="globex", key_id="key-globex")
    upstream.succeed(times=2)
    url_mode = {"x-response-mode": "url"}
    acme = body_json(invoke(api_event(SMALL, api_key_id="key-acme", headers=url_mode)))
    globex = body_json(invoke(api_event(SMALL, api_key_id="key-globex", headers=url_mode)))
    assert (acme["cache"], globex["cache"]) == ("MISS", "MISS")  # same request, separate caches
    acme_tenant, globex_tenant = tenancy.by_name("acme"), tenancy.by_name("globex")
    assert f"/cache/{acme_tenant.tenant_id}/" in acme["images"][0]["url"]
    assert f"/cache/{globex_tenant.tenant_id}/" in globex["images"][0]["url"]
    assert usage_of(invoke, "key-acme")["images_generated"] == 1
    assert usage_of(invoke, "key-globex")["name"] == "globex"


def test_unregistered_suspended_and_deleted_keys_are_refused_before_any_work(invoke, upstream, tenancy):
    tenant = make_tenant(tenancy)
    unknown = invoke(api_event(SAMPLE, api_key_id="key-unknown"))
    assert unknown["statusCode"] == 403 and "not registered" in body_json(unknown)["error"]
    tenant.status = TenantStatus.SUSPENDED
    tenancy.update(tenant)
    suspended = invoke(api_event(SAMPLE, api_key_id="key-acme"))
    assert suspended["statusCode"] == 403 and "suspended" in body_json(suspended)["error"]
    tenancy.delete(tenant)
    assert invoke(api_event(SAMPLE, api_key_id="key-acme"))["statusCode"] == 403
    assert upstream.calls() == []


def test_a_known_key_reads_the_cache_while_its_tenant_is_checked(invoke, upstream, tenancy):
    tenant = make_tenant(tenancy)
    upstream.succeed()
    assert invoke(api_event(SMALL, api_key_id="key-acme"))["statusCode"] == 200  # the container learns the key
    order = order_against_tenant_check("GetObject")
    hit = invoke(api_event(SMALL, api_key_id="key-acme"))
    assert header(hit, "x-cache") == "HIT"
    assert order[:2] == ["cache read", "tenant check done"]
    # ...but the tenant check still decides: a suspended tenant gets nothing of what was read.
    tenant.status = TenantStatus.SUSPENDED
    tenancy.update(tenant)
    refused = invoke(api_event(SMALL, api_key_id="key-acme"))
    assert refused["statusCode"] == 403 and "suspended" in body_json(refused)["error"]
    assert "image" not in json.dumps(body_json(refused))


def test_browser_key_refuses_foreign_origins_without_cors(invoke, upstream, tenancy):
    make_tenant(tenancy, allowed_origins=["https://app.example"])
    upstream.succeed()
    foreign = invoke(api_event(SMALL, api_key_id="key-acme", headers={"Origin": "https://evil.example"}))
    assert foreign["statusCode"] == 403
    assert "Access-Control-Allow-Origin" not in foreign["headers"]
    assert upstream.calls() == []
    allowed = invoke(api_event(SMALL, api_key_id="key-acme", headers={"Origin": "https://app.example"}))
    assert allowed["statusCode"] == 200
    assert header(allowed, "Access-Control-Allow-Origin") == "https://app.example"


def test_usage_for_another_month_and_bad_month(invoke, tenancy):
    make_tenant(tenancy)
    event = api_event(method="GET", path="/v1/usage", api_key_id="key-acme")
    event["queryStringParameters"] = {"month": "2020-01"}
    report = body_json(invoke(event))
    assert report["month"] == "2020-01" and report["requests"] == 0
    event["queryStringParameters"] = {"month": "2020-13"}
    assert invoke(event)["statusCode"] == 400
    event["queryStringParameters"] = {"mnth": "2020-01"}  # misspelt: refused, not this month's figures
    misspelt = invoke(event)
    assert misspelt["statusCode"] == 400 and "'mnth'" in body_json(misspelt)["error"]


def test_reported_balance_is_kept_for_reconciliation(invoke, upstream, tenancy, ddb, monkeypatch):
    monkeypatch.setattr("segmind_proxy.flows.billing.BALANCE_WRITE_INTERVAL_SECONDS", 0.0)
    make_tenant(tenancy)
    upstream.succeed(times=2)
    invoke(api_event(SMALL, api_key_id="key-acme"))
    invoke(api_event(SMALL | {"seed": 9}, api_key_id="key-acme"))
    balance = Meter(TENANTS_TABLE, lambda: ddb).balance()
    assert balance["first_balance"] == pytest.approx(99.99) and balance["last_balance"] == pytest.approx(99.98)


def test_per_tenant_figures_are_emf_metadata_not_dimensions(invoke, upstream, tenancy, capsys):
    tenant = make_tenant(tenancy)
    upstream.succeed()
    invoke(api_event(SMALL, api_key_id="key-acme"))
    blobs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    blob = next(b for b in blobs if "CacheMisses" in b)
    assert blob["tenant_id"] == tenant.tenant_id and blob["credits_charged"] == pytest.approx(0.004)
    assert blob["cache_hit"] == 0 and blob["images_generated"] == 1 and blob["prompt"].startswith("a majestic")
    dimensions = {d for spec in blob["_aws"]["CloudWatchMetrics"] for group in spec["Dimensions"] for d in group}
    assert dimensions == {"service"}


@pytest.mark.parametrize(
    ("method", "path", "body", "key_id"),
    [
        ("GET", "/v1/usage", None, "key-acme"),  # a route answered by Powertools from its model
        ("POST", "/v1/stable-diffusion-3.5-turbo-txt2img", {"prompt": "x", "seed": -2}, "key-acme"),  # a 400
        ("POST", "/v1/stable-diffusion-3.5-turbo-txt2img", {"prompt": "x"}, "key-nobody"),  # refused at the edge
        ("GET", "/v1/health", None, None),
        ("GET", "/playground", None, None),
        ("GET", "/v1/no-such-thing", None, "key-acme"),
        ("OPTIONS", "/v1/usage", None, None),  # a preflight, answered by the resolver's CORS
    ],
)
def test_every_answer_names_its_request(invoke, tenancy, method, path, body, key_id):
    make_tenant(tenancy)
    event = api_event(body, method=method, path=path, api_key_id=key_id, headers={"Origin": "https://a.example"})
    assert header(invoke(event), "x-request-id") == event["requestContext"]["requestId"]


def test_a_model_outside_the_plan_is_refused_in_each_doors_shape_before_any_work(invoke, upstream, tenancy):
    make_tenant(tenancy, plan_models=["flux-schnell"])
    segmind = invoke(api_event(SMALL, api_key_id="key-acme"))  # SD 3.5 Turbo, not in the plan
    assert (
        segmind["statusCode"] == 403
        and "may not use the model 'stable-diffusion-3.5-turbo-txt2img'" in (body_json(segmind)["error"])
    )
    openai = invoke(api_event({"prompt": "x"}, path="/v1/images/generations", api_key_id="key-acme"))
    error = body_json(openai)["error"]
    assert openai["statusCode"] == 404 and (error["code"], error["param"]) == ("model_not_found", "model")
    listed = body_json(invoke(api_event(method="GET", path="/v1/models", api_key_id="key-acme")))
    assert [model["id"] for model in listed["data"]] == ["flux-1-schnell"]
    one = invoke(api_event(method="GET", path="/v1/models/stable-diffusion-3.5-turbo", api_key_id="key-acme"))
    assert one["statusCode"] == 404
    assert upstream.calls() == []
    assert usage_of(invoke, "key-acme")["requests"] == 0  # nothing was done, nothing counted


def test_usage_is_broken_down_by_model(invoke, upstream, tenancy):
    make_tenant(tenancy)
    upstream.succeed()
    assert invoke(api_event(SMALL, api_key_id="key-acme"))["statusCode"] == 200
    assert usage_of(invoke, "key-acme")["by_model"] == {
        SLUG: {"images_generated": 1, "credits_spent": pytest.approx(0.004)}
    }


def test_a_v2_submit_of_a_model_outside_the_plan_is_refused_and_makes_no_job(invoke, upstream, jobs_env):
    make_tenant(jobs_env["registry"], plan_models=["flux-schnell"])
    refused = invoke(api_event(SMALL, path=f"/v2/{SLUG}", api_key_id="key-acme"))
    assert refused["statusCode"] == 403 and "may not use the model" in body_json(refused)["error"]
    assert jobs_env["sqs"].receive_message(QueueUrl=jobs_env["queue"]).get("Messages", []) == []
