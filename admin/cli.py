"""`segmind-proxy`: manage tenants (keys, plans, budgets, origins) and read usage, on a deployed or the local stack.

segmind-proxy --stack-name my-gateway tenants create acme --plan pro --budget-credits 50
segmind-proxy --local tenants list
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from segmind_proxy.adapters.dynamo_tenants import TenantRegistry
from segmind_proxy.adapters.dynamo_usage import Meter
from segmind_proxy.domain.errors import Outage
from segmind_proxy.domain.tenants import Tenant

from .service import AdminError, CreatedTenant, StackRefs, TenantAdmin

LOCAL_STACK = "segmind-proxy-local"


def _budget(value: str) -> float | None:
    return None if value.lower() == "none" else float(value)


def _image_budget(value: str) -> int | None:
    return None if value.lower() == "none" else int(value)


def _common_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """The options every command reads. The root parser holds their defaults; each subcommand accepts them too, so
    they work where a user types them (`tenants list --json` as well as `--json tenants list`)."""

    def default(value: Any) -> Any:
        return value if defaults else argparse.SUPPRESS

    parser.add_argument(
        "--stack-name", default=default(os.environ.get("STACK_NAME")), help="the deployed stack (or STACK_NAME)"
    )
    parser.add_argument("--region", default=default(None), help="AWS region (default: your AWS configuration)")
    parser.add_argument("--profile", default=default(None), help="AWS profile")
    parser.add_argument(
        "--local", action="store_true", default=default(False), help="the local stack of `make dev` (moto on MOTO_PORT)"
    )
    parser.add_argument("--json", action="store_true", default=default(False), help="machine-readable output (JSON)")


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="segmind-proxy", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    _common_options(root, defaults=True)
    common = argparse.ArgumentParser(add_help=False)
    _common_options(common, defaults=False)
    groups = root.add_subparsers(dest="group", required=True)

    _tenant_commands(groups.add_parser("tenants", help="create, list and change tenants", parents=[common]), common)
    plans = groups.add_parser("plans", help="the models each plan includes", parents=[common])
    plan_commands = plans.add_subparsers(dest="command", required=True)
    show_plan = plan_commands.add_parser("show", help="the models a plan includes", parents=[common])
    show_plan.add_argument("plan")
    set_models = plan_commands.add_parser(
        "set-models",
        help="the models a plan includes (none: every model); its tenants follow at once",
        parents=[common],
    )
    set_models.add_argument("plan")
    set_models.add_argument("models", nargs="*", help="model slugs (or OpenAI ids)")
    usage = groups.add_parser("usage", help="every tenant's usage for a month, for billing", parents=[common])
    usage.add_argument("--month", default=None, help="YYYY-MM (default: this month, UTC)")
    return root


def _tenant_commands(group: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    tenants = group.add_subparsers(dest="command", required=True)

    def command(name: str, text: str) -> argparse.ArgumentParser:
        return tenants.add_parser(name, help=text, parents=[common])

    create = command("create", "create a tenant and print its new key (shown once)")
    create.add_argument("name")
    create.add_argument("--plan", required=True)
    create.add_argument("--budget-credits", type=float, default=None, help="monthly credit budget")
    create.add_argument("--budget-images", type=int, default=None, help="monthly image budget")
    create.add_argument("--allowed-origin", action="append", default=[], dest="origins", help="browser origin (repeat)")
    create.add_argument("--key-value", default=None, help=argparse.SUPPRESS)  # the local stack's fixed demo key
    command("list", "every tenant (deleted ones are kept for billing: see `usage`)")
    for name, text in [
        ("show", "a tenant (deleted ones too, by id) and its usage this month"),
        ("rotate-key", "issue a new key; the old one stops working at once"),
        ("suspend", "refuse the tenant's requests at once"),
        ("resume", "accept them again"),
    ]:
        command(name, text).add_argument("tenant", help="name or id")
    webhook = command("webhook-secret", "show the secret that signs the tenant's job webhooks")
    webhook.add_argument("tenant")
    webhook.add_argument("--rotate", action="store_true", help="replace it (receivers must switch)")
    delete = command("delete", "delete the tenant's key and free its name (its usage stays, for billing)")
    delete.add_argument("tenant")
    delete.add_argument("--yes", action="store_true", help="do not ask")
    set_plan = command("set-plan", "move the tenant's key to another plan")
    set_plan.add_argument("tenant")
    set_plan.add_argument("plan")
    set_budget = command("set-budget", "monthly budgets ('none' removes one)")
    set_budget.add_argument("tenant")
    set_budget.add_argument("--credits", type=_budget, default=argparse.SUPPRESS)
    set_budget.add_argument("--images", type=_image_budget, default=argparse.SUPPRESS)
    tenant_models = command("set-models", "the models the tenant may use, in place of its plan's (none: its plan's)")
    tenant_models.add_argument("tenant")
    tenant_models.add_argument("models", nargs="*", help="model slugs (or OpenAI ids)")
    set_origins = command("set-origins", "browser origins allowed for the key (none: any)")
    set_origins.add_argument("tenant")
    set_origins.add_argument("origins", nargs="*")


def build_admin(args: argparse.Namespace) -> TenantAdmin:
    stack_name = args.stack_name
    options: dict[str, Any] = {}
    session_args: dict[str, Any] = {"region_name": args.region, "profile_name": args.profile}
    if args.local:
        stack_name = stack_name or LOCAL_STACK
        options["endpoint_url"] = f"http://127.0.0.1:{os.environ.get('MOTO_PORT', '5510')}"
        session_args = {"region_name": "us-east-1", "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    if not stack_name:
        raise AdminError("Name the stack: --stack-name NAME (or STACK_NAME), or --local for the local stack")
    session = boto3.session.Session(**{k: v for k, v in session_args.items() if v})
    refs = StackRefs.find(session.client("cloudformation", **options), stack_name)
    dynamodb = session.resource("dynamodb", **options)
    return TenantAdmin(
        refs,
        session.client("apigateway", **options),
        TenantRegistry(refs.tenants_table, resource=lambda: dynamodb),
        Meter(refs.tenants_table, resource=lambda: dynamodb),
    )


def _tenant_dict(tenant: Tenant) -> dict[str, Any]:
    return {
        "tenant_id": tenant.tenant_id,
        "name": tenant.name,
        "plan": tenant.plan,
        "status": tenant.status.value,
        "api_key_id": tenant.api_key_id,
        "budget_credits": tenant.budget_credits,
        "budget_images": tenant.budget_images,
        "allowed_origins": tenant.allowed_origins,
        "models": tenant.allowed_models,  # null: every model
        "models_from": "tenant" if tenant.models else "plan" if tenant.plan_models else "every model",
        "created_at": tenant.created_at,
        **({"deleted_at": tenant.deleted_at} if tenant.deleted else {}),
    }


def _print_table(rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    cells = [[str("-" if row.get(c) is None else row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) if cells else len(c) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))


def run(args: argparse.Namespace, admin: TenantAdmin) -> Any:
    """Carry out the command; returns what to print (JSON-able)."""
    if args.group == "usage":
        return admin.billing_report(args.month)
    if args.group == "plans":
        if args.command == "set-models":
            admin.set_plan_models(args.plan, args.models)
        return {"plan": args.plan, "models": admin.plan_models(args.plan) or None}  # null: every model
    command = args.command
    if command == "create":
        return admin.create(
            args.name,
            args.plan,
            budget_credits=args.budget_credits,
            budget_images=args.budget_images,
            allowed_origins=args.origins,
            key_value=args.key_value,
        )
    if command == "list":
        return [_tenant_dict(t) for t in admin.tenants()]
    if command == "show":
        tenant = admin.tenant(args.tenant)
        usage = admin.usage(tenant)
        return {**_tenant_dict(tenant), "usage": usage.figures(tenant)}
    if command == "rotate-key":
        return admin.rotate_key(args.tenant)
    if command == "suspend":
        return _tenant_dict(admin.suspend(args.tenant))
    if command == "resume":
        return _tenant_dict(admin.resume(args.tenant))
    if command == "delete":
        if not args.yes and (
            not sys.stdin.isatty() or input(f"Delete tenant '{args.tenant}' and its key? [y/N] ") != "y"
        ):
            raise AdminError("Not deleted (pass --yes to skip the question)")
        return _tenant_dict(admin.delete(args.tenant))
    if command == "set-plan":
        return _tenant_dict(admin.set_plan(args.tenant, args.plan))
    if command == "set-budget":
        given = {name: getattr(args, name) for name in ("credits", "images") if hasattr(args, name)}
        return _tenant_dict(admin.set_budget(args.tenant, **given))
    if command == "webhook-secret":
        tenant = admin.rotate_webhook_secret(args.tenant) if args.rotate else admin.tenant(args.tenant)
        return {"tenant_id": tenant.tenant_id, "name": tenant.name, "webhook_secret": tenant.webhook_secret}
    if command == "set-origins":
        return _tenant_dict(admin.set_origins(args.tenant, args.origins))
    if command == "set-models":
        return _tenant_dict(admin.set_models(args.tenant, args.models))
    raise AdminError(f"Unknown command {command}")


def show(result: Any, as_json: bool) -> None:
    if isinstance(result, CreatedTenant):
        data = {**_tenant_dict(result.tenant), "api_key": result.api_key}
        if as_json:
            print(json.dumps(data, indent=2))
        else:
            print(f"Tenant '{result.tenant.name}' ({result.tenant.tenant_id}) on plan {result.tenant.plan}.")
            print(f"API key (shown once, store it now): {result.api_key}")
        return
    if as_json or not isinstance(result, list | dict):
        print(json.dumps(result, indent=2, default=str))
    elif isinstance(result, list):
        _print_table(result, ["name", "tenant_id", "plan", "status", "budget_credits", "budget_images"])
    elif "tenants" in result:
        _print_table(
            result["tenants"],
            [
                "name",
                "plan",
                "status",
                "requests",
                "cache_hits",
                "images_generated",
                "credits_spent",
                "credits_reserved",
            ],
        )
        print(f"\nCredits spent (estimated), all tenants: {result['credits_spent_total']}  (month {result['month']})")
        if result["actual_over_estimated"] is not None:
            print(f"Segmind balance drop / estimate: {result['actual_over_estimated']}")
    else:
        _print_fields(result)


def _print_fields(fields: dict[str, Any], indent: str = "") -> None:
    """`name: value` lines, nested objects indented under their name; values as JSON writes them (null, true)."""
    for key, value in fields.items():
        if isinstance(value, dict):
            print(f"{indent}{key}:")
            _print_fields(value, indent + "  ")
        else:
            print(f"{indent}{key}: {value if isinstance(value, str) else json.dumps(value)}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        show(run(args, build_admin(args)), args.json)
    except AdminError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (ClientError, BotoCoreError) as exc:
        print(f"error: AWS call failed: {exc}", file=sys.stderr)
        return 1
    except Outage as exc:  # the registry's and the ledger's AWS errors, as their adapters raise them
        print(f"error: AWS call failed: {exc.__cause__}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
