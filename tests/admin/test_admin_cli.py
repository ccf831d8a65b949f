"""The `segmind-proxy` CLI and its service, against moto: keys, plans and the registry stay in step."""

import json

import boto3
import pytest

from admin.cli import main
from local.aws_bootstrap import create_outputs_stack
from local.template import Stack
from segmind_proxy.api.schemas import UsageReport
from tests.support.aws import TENANTS_TABLE, aws_failing


@pytest.fixture
def deployed(ddb):
    """A 'deployed' stack in moto: usage plans, the table and a CloudFormation stack with the template's outputs."""
    apigw = boto3.client("apigateway")
    stack = Stack("gw-test")
    stack.physical["GatewayApi"] = apigw.create_rest_api(name="gw")["id"]
    stack.physical["TenantsTable"] = TENANTS_TABLE
    for plan, rate in (("Free", 1), ("Pro", 5), ("Enterprise", 50)):
        created = apigw.create_usage_plan(name=plan.lower(), throttle={"rateLimit": rate, "burstLimit": rate * 2})
        stack.physical[f"{plan}UsagePlan"] = created["id"]
    create_outputs_stack(stack, boto3.client("cloudformation"))
    return {"apigw": apigw, "stack": stack}


def cli(capsys, *args):
    code = main(["--stack-name", "gw-test", "--region", "us-east-1", "--json", *args])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else None), err


def plan_keys(deployed, plan):
    plan_id = deployed["stack"].physical[f"{plan}UsagePlan"]
    return {k["id"] for k in deployed["apigw"].get_usage_plan_keys(usagePlanId=plan_id)["items"]}


def test_create_prints_the_key_once_and_wires_plan_and_registry(deployed, capsys):
    code, created, _ = cli(
        capsys,
        "tenants",
        "create",
        "acme",
        "--plan",
        "pro",
        "--budget-credits",
        "5",
        "--allowed-origin",
        "https://acme.example",
    )
    assert code == 0
    key = deployed["apigw"].get_api_key(apiKey=created["api_key_id"], includeValue=True)
    assert key["value"] == created["api_key"] and key["enabled"]
    assert created["api_key_id"] in plan_keys(deployed, "Pro")
    code, shown, _ = cli(capsys, "tenants", "show", "acme")
    assert "api_key" not in shown  # never shown again
    assert shown["budget_credits"] == 5.0 and shown["allowed_origins"] == ["https://acme.example"]
    assert shown["usage"]["remaining"] == {"credits": 5.0, "images": None}


def test_clear_errors(deployed, capsys):
    cli(capsys, "tenants", "create", "acme", "--plan", "pro")
    assert (
        cli(capsys, "tenants", "create", "acme", "--plan", "pro")[2] == "error: A tenant named 'acme' already exists\n"
    )
    assert "Unknown plan 'gold'" in cli(capsys, "tenants", "create", "b2", "--plan", "gold")[2]
    code, _, err = cli(capsys, "tenants", "show", "nobody")
    assert code == 2 and "No tenant named or with id 'nobody'" in err
    for month in ("2026-13", "abc", "2026-1"):
        code, _, err = cli(capsys, "usage", "--month", month)
        assert code == 2 and f"Month '{month}' is not YYYY-MM" in err
    code = main(["--stack-name", "missing-stack", "--region", "us-east-1", "tenants", "list"])
    assert code == 2 and "No stack named 'missing-stack'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--budget-credits", "-5"),
        ("--budget-credits", "nan"),
        ("--budget-credits", "inf"),
        ("--budget-credits", "1e200"),
        ("--budget-images", "10000000000"),
    ],
)
def test_budgets_out_of_range_are_clear_errors_and_leave_no_key(deployed, capsys, option, value):
    code, _, err = cli(capsys, "tenants", "create", "acme", "--plan", "pro", option, value)
    assert code == 2 and err.startswith("error: A") and "budget" in err
    assert deployed["apigw"].get_api_keys()["items"] == []
    cli(capsys, "tenants", "create", "acme", "--plan", "pro")
    code, _, err = cli(capsys, "tenants", "set-budget", "acme", option.replace("budget-", ""), value)
    assert code == 2 and "budget" in err


def test_a_create_whose_registry_write_fails_leaves_no_key(deployed, capsys, monkeypatch):
    aws_failing(monkeypatch, "TransactWriteItems")  # the registry's write of the new tenant
    code, _, err = cli(capsys, "tenants", "create", "acme", "--plan", "pro")
    assert code == 1 and "aws.example" in err  # the AWS failure, reported as the CLI reports one
    assert deployed["apigw"].get_api_keys()["items"] == []


def test_list_set_plan_budget_and_origins(deployed, capsys):
    cli(capsys, "tenants", "create", "acme", "--plan", "free")
    cli(capsys, "tenants", "create", "globex", "--plan", "pro")
    _, tenants, _ = cli(capsys, "tenants", "list")
    assert [t["name"] for t in tenants] == ["acme", "globex"]
    _, moved, _ = cli(capsys, "tenants", "set-plan", "acme", "enterprise")
    assert moved["plan"] == "enterprise"
    assert moved["api_key_id"] in plan_keys(deployed, "Enterprise")
    assert moved["api_key_id"] not in plan_keys(deployed, "Free")
    _, budget, _ = cli(capsys, "tenants", "set-budget", "acme", "--images", "100")
    assert (budget["budget_images"], budget["budget_credits"]) == (100, None)
    _, budget, _ = cli(capsys, "tenants", "set-budget", "acme", "--credits", "2.5", "--images", "none")
    assert (budget["budget_images"], budget["budget_credits"]) == (None, 2.5)
    _, origins, _ = cli(
        capsys, "tenants", "set-origins", "acme", "https://a.example", "https://b.example", "https://a.example"
    )
    assert origins["allowed_origins"] == ["https://a.example", "https://b.example"]  # once each, in order
    code, _, err = cli(capsys, "tenants", "set-budget", "acme")
    assert code == 2 and "Nothing to change" in err
    assert "not an origin" in cli(capsys, "tenants", "set-origins", "acme", "https://a.example/path")[2]


def test_rotate_suspend_resume_delete(deployed, capsys):
    _, created, _ = cli(capsys, "tenants", "create", "acme", "--plan", "pro")
    _, rotated, _ = cli(capsys, "tenants", "rotate-key", "acme")
    assert rotated["api_key"] != created["api_key"] and rotated["tenant_id"] == created["tenant_id"]
    apigw = deployed["apigw"]
    assert created["api_key_id"] not in {k["id"] for k in apigw.get_api_keys()["items"]}
    assert rotated["api_key_id"] in plan_keys(deployed, "Pro")
    # The key stays enabled while suspended, so the gateway can tell the tenant why it is refused (the function
    # refuses it: tests/api/test_handler_tenancy.py).
    _, suspended, _ = cli(capsys, "tenants", "suspend", "acme")
    assert suspended["status"] == "suspended" and apigw.get_api_key(apiKey=rotated["api_key_id"])["enabled"]
    _, resumed, _ = cli(capsys, "tenants", "resume", "acme")
    assert resumed["status"] == "active" and apigw.get_api_key(apiKey=rotated["api_key_id"])["enabled"]
    code, deleted, _ = cli(capsys, "tenants", "delete", "acme", "--yes")
    assert code == 0 and deleted["name"] == "acme" and deleted["status"] == "deleted" and deleted["deleted_at"]
    assert apigw.get_api_keys()["items"] == []
    assert cli(capsys, "tenants", "list")[1] == []


def test_a_key_disabled_by_an_earlier_suspend_is_enabled_by_suspend_or_resume(deployed, capsys):
    _, created, _ = cli(capsys, "tenants", "create", "acme", "--plan", "pro")
    apigw = deployed["apigw"]
    for command in ("suspend", "resume"):
        apigw.update_api_key(
            apiKey=created["api_key_id"], patchOperations=[{"op": "replace", "path": "/enabled", "value": "false"}]
        )
        assert cli(capsys, "tenants", command, "acme")[0] == 0
        assert apigw.get_api_key(apiKey=created["api_key_id"])["enabled"]


def test_a_deleted_tenant_stays_billed_by_name_and_cannot_be_changed(deployed, capsys, meter, registry):
    _, created, _ = cli(capsys, "tenants", "create", "acme", "--plan", "pro")
    cli(capsys, "tenants", "create", "idle", "--plan", "free")
    _, gone, _ = cli(capsys, "tenants", "create", "gone", "--plan", "free")
    acme = registry.get(created["tenant_id"])
    meter.settle(meter.reserve(acme, 0.01, 1)[0], 0.01, 1)
    before = cli(capsys, "usage")[1]
    assert cli(capsys, "tenants", "delete", "acme", "--yes")[0] == 0
    assert cli(capsys, "tenants", "delete", "gone", "--yes")[0] == 0  # no usage this month: not in its report
    after = cli(capsys, "usage")[1]
    assert after["credits_spent_total"] == before["credits_spent_total"] == pytest.approx(0.01)
    rows = {row["name"]: row for row in after["tenants"]}
    assert sorted(rows) == ["acme", "idle"]
    assert rows["acme"]["status"] == "deleted" and rows["acme"]["images_generated"] == 1
    code, shown, _ = cli(capsys, "tenants", "show", created["tenant_id"])
    assert code == 0 and shown["status"] == "deleted" and shown["usage"]["credits_spent"] == pytest.approx(0.01)
    code, _, err = cli(capsys, "tenants", "set-budget", created["tenant_id"], "--credits", "5")
    assert code == 2 and "was deleted" in err
    assert cli(capsys, "tenants", "delete", gone["tenant_id"], "--yes")[2].count("was deleted") == 1
    # The name is free again; the new tenant is billed apart from the deleted one.
    assert cli(capsys, "tenants", "create", "acme", "--plan", "pro")[0] == 0
    names = [(row["name"], row["status"]) for row in cli(capsys, "usage")[1]["tenants"]]
    assert names == [("acme", "active"), ("acme", "deleted"), ("idle", "active")]


def test_delete_asks_unless_told(deployed, capsys, monkeypatch):
    cli(capsys, "tenants", "create", "acme", "--plan", "pro")
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    code, _, err = cli(capsys, "tenants", "delete", "acme")
    assert code == 2 and "--yes" in err


def test_usage_report_for_billing(deployed, capsys, meter, registry):
    _, created, _ = cli(capsys, "tenants", "create", "acme", "--plan", "pro")
    tenant = registry.get(created["tenant_id"])
    meter.settle(meter.reserve(tenant, 0.02, 2)[0], 0.02, 2)
    meter.record_hit(tenant)
    meter.record_balance(10.0)
    meter.record_balance(9.97)
    _, report, _ = cli(capsys, "usage")
    row = report["tenants"][0]
    assert (row["name"], row["requests"], row["cache_hits"], row["images_generated"]) == ("acme", 2, 1, 2)
    assert report["credits_spent_total"] == pytest.approx(0.02)
    assert report["actual_over_estimated"] == pytest.approx(1.5)


def test_human_output(deployed, capsys):
    assert main(["--stack-name", "gw-test", "--region", "us-east-1", "tenants", "create", "acme", "--plan", "pro"]) == 0
    out = capsys.readouterr().out
    assert "API key (shown once, store it now):" in out
    main(["--stack-name", "gw-test", "--region", "us-east-1", "tenants", "list"])
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:3] == ["NAME", "TENANT_ID", "PLAN"] and table[1].startswith("acme")


def test_options_are_read_after_the_subcommand_too(deployed, capsys):
    assert main(["tenants", "create", "acme", "--plan", "pro", "--stack-name", "gw-test", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "acme"
    assert main(["usage", "--region", "us-east-1", "--stack-name", "gw-test", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tenants"][0]["name"] == "acme"


def test_show_names_usage_as_the_api_does_and_prints_no_python(deployed, capsys):
    cli(capsys, "tenants", "create", "acme", "--plan", "pro", "--budget-images", "3")
    _, shown, _ = cli(capsys, "tenants", "show", "acme")
    assert set(shown["usage"]) == set(UsageReport.model_fields) - {"tenant_id", "name", "plan"}
    assert main(["--stack-name", "gw-test", "tenants", "show", "acme"]) == 0
    out = capsys.readouterr().out
    assert "None" not in out and "{" not in out
    assert "usage:\n" in out and "  credits_reserved: 0.0\n" in out and "    credits: null\n" in out


def test_two_operators_at_once_lose_neither_change(deployed, capsys, registry):
    """A budget change whose read predates a suspension is re-applied on top of it, not written over it."""
    from admin.service import TenantAdmin

    code, created, _ = cli(capsys, "tenants", "create", "acme", "--plan", "pro")
    original = TenantAdmin._change
    raced = []

    def with_a_suspension_in_between(self, name_or_id, apply):
        def apply_then_race(tenant):
            apply(tenant)
            if not raced:  # another operator suspends after this read, before this write
                raced.append(True)
                assert cli(capsys, "tenants", "suspend", "acme")[0] == 0

        return original(self, name_or_id, apply_then_race)

    TenantAdmin._change = with_a_suspension_in_between
    try:
        code, _, _ = cli(capsys, "tenants", "set-budget", "acme", "--images", "7")
    finally:
        TenantAdmin._change = original
    assert code == 0 and raced
    stored = registry.get(created["tenant_id"])
    assert stored.status.value == "suspended" and stored.budget_images == 7


def test_a_delete_that_races_a_rotation_deletes_the_new_key_too(deployed, capsys, registry):
    from admin.service import TenantAdmin

    code, created, _ = cli(capsys, "tenants", "create", "acme", "--plan", "pro")
    original, raced = TenantAdmin.tenant, []

    def read_then_rotate(self, name_or_id):
        tenant = original(self, name_or_id)
        if not raced:  # another operator rotates the key after this read
            raced.append(None)
            raced[0] = cli(capsys, "tenants", "rotate-key", "acme")[1]["api_key_id"]
        return tenant

    TenantAdmin.tenant = read_then_rotate
    try:
        code, _, _ = cli(capsys, "tenants", "delete", "acme", "--yes")
    finally:
        TenantAdmin.tenant = original
    assert code == 0 and raced
    keys = {k["id"] for k in deployed["apigw"].get_api_keys()["items"]}
    assert created["api_key_id"] not in keys and raced[0] not in keys  # no key of the tenant left behind
    stored = registry.get(created["tenant_id"])
    assert stored.deleted and stored.api_key_id == raced[0]


def test_plans_choose_models_and_a_tenant_may_have_its_own(deployed, capsys, registry):
    cli(capsys, "tenants", "create", "acme", "--plan", "pro")
    cli(capsys, "tenants", "create", "free-one", "--plan", "free")
    _, shown, _ = cli(capsys, "tenants", "show", "acme")
    assert (shown["models"], shown["models_from"]) == (None, "every model")
    code, plan, _ = cli(capsys, "plans", "set-models", "pro", "flux-schnell", "stable-diffusion-3.5-turbo")
    assert code == 0 and plan == {"plan": "pro", "models": ["flux-schnell", "stable-diffusion-3.5-turbo-txt2img"]}
    acme = registry.by_name("acme")  # the plan's models stamped on its tenants, at once
    assert acme.may_use("flux-schnell") and not acme.may_use("flux-dev")
    assert registry.by_name("free-one").allowed_models is None  # another plan: unchanged
    _, created, _ = cli(capsys, "tenants", "create", "late", "--plan", "pro")  # a tenant made later follows too
    assert created["models"] == ["flux-schnell", "stable-diffusion-3.5-turbo-txt2img"]
    _, own, _ = cli(capsys, "tenants", "set-models", "acme", "flux-dev")
    assert (own["models"], own["models_from"]) == (["flux-dev"], "tenant")
    _, moved, _ = cli(capsys, "tenants", "set-plan", "free-one", "pro")
    assert moved["models_from"] == "plan" and "flux-schnell" in moved["models"]
    code, _, err = cli(capsys, "plans", "set-models", "pro", "dall-e-3")
    assert code == 2 and "No model named 'dall-e-3'" in err
    assert cli(capsys, "plans", "set-models", "pro")[1]["models"] is None  # none: every model again
    assert registry.by_name("late").allowed_models is None
