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
from segmind_proxy.domain.screening import OnScreenFailure, ScreeningPolicy, ScreenMode
from segmind_proxy.domain.tenants import Tenant

from .provenance import ProvenanceAdmin, verify
from .service import KEEP, AdminError, CreatedTenant, StackRefs, TenantAdmin

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
    _provenance_commands(groups, common)
    verify = groups.add_parser(
        "verify",
        help="what an image's provenance marks say; with --local or --stack-name, also whether that stack's key signed it",
        parents=[common],
    )
    verify.add_argument("file")
    verify.add_argument("--trust-anchor", default=None, help="a root CA (PEM) to trust, such as your stack's own")
    return root


def _provenance_commands(groups: Any, common: argparse.ArgumentParser) -> None:
    provenance = groups.add_parser(
        "provenance", help="the certificate of the key that signs the images' marks", parents=[common]
    )
    commands = provenance.add_subparsers(dest="command", required=True)
    commands.add_parser("show", help="the key and its installed chain", parents=[common])
    csr = commands.add_parser("csr", help="a certificate signing request signed by the KMS key", parents=[common])
    csr.add_argument("--subject", required=True, help="e.g. 'CN=Acme image signing,O=Acme Ltd,C=DE'")
    install = commands.add_parser("install-chain", help="install the chain a CA issued (PEM)", parents=[common])
    install.add_argument("file", help="signing certificate first, then its issuers")
    commands.add_parser(
        "self-sign", help="install a self-made chain (valid but untrusted) until a CA's", parents=[common]
    )


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
    screening = command("set-screening", "how the tenant's prompts are screened before any cost (replaces its policy)")
    screening.add_argument("tenant")
    screening.add_argument("mode", choices=[m.value for m in ScreenMode], help="off, terms, or guardrail (Bedrock)")
    screening.add_argument("--term", action="append", default=[], dest="terms", help="a word or phrase (repeat)")
    screening.add_argument("--pattern", action="append", default=[], dest="patterns", help="a regex (repeat)")
    screening.add_argument(
        "--no-default-terms", action="store_false", dest="default_terms", help="without the gateway's default list"
    )
    screening.add_argument("--guardrail-id", default="", help="Bedrock guardrail id or ARN (mode guardrail)")
    screening.add_argument("--guardrail-version", default="", help="its version: a number or DRAFT")
    screening.add_argument(
        "--fail-open",
        action="store_const",
        const=OnScreenFailure.OPEN,
        default=OnScreenFailure.CLOSED,
        dest="on_failure",
        help="serve unscreened (logged, counted) when the screen cannot answer; default: refuse with 503",
    )
    screening.add_argument(
        "--log-refused-prompts", action="store_true", dest="record_prompt", help="log a refused prompt's text"
    )
    marks = command("set-marks", "whether the tenant's images are marked as AI-generated (XMP and C2PA)")
    marks.add_argument("tenant")
    marks.add_argument("state", nargs="?", choices=["on", "off"], help="marks on (the default) or off")
    prompt = marks.add_mutually_exclusive_group()
    prompt.add_argument("--with-prompt", action="store_true", help="the manifest holds the prompt")
    prompt.add_argument("--without-prompt", action="store_true", help="it does not (the default: prompts are private)")
    set_origins = command("set-origins", "browser origins allowed for the key (none: any)")
    set_origins.add_argument("tenant")
    set_origins.add_argument("origins", nargs="*")


class Stack:
    """The stack a command works on, found by its name (or the local stack's), with clients of the right session."""

    def __init__(self, args: argparse.Namespace) -> None:
        stack_name = args.stack_name
        self.options: dict[str, Any] = {}
        session_args: dict[str, Any] = {"region_name": args.region, "profile_name": args.profile}
        if args.local:
            stack_name = stack_name or LOCAL_STACK
            self.options["endpoint_url"] = f"http://127.0.0.1:{os.environ.get('MOTO_PORT', '5510')}"
            session_args = {
                "region_name": "us-east-1",
                "aws_access_key_id": "testing",
                "aws_secret_access_key": "testing",
            }
        if not stack_name:
            raise AdminError("Name the stack: --stack-name NAME (or STACK_NAME), or --local for the local stack")
        self.session = boto3.session.Session(**{k: v for k, v in session_args.items() if v})
        self.refs = StackRefs.find(self.client("cloudformation"), stack_name)

    def client(self, service: str) -> Any:
        return self.session.client(service, **self.options)

    def resource(self, service: str) -> Any:
        return self.session.resource(service, **self.options)


def build_admin(args: argparse.Namespace) -> TenantAdmin:
    stack = Stack(args)
    refs, dynamodb = stack.refs, stack.resource("dynamodb")
    return TenantAdmin(
        refs,
        stack.client("apigateway"),
        TenantRegistry(refs.tenants_table, resource=lambda: dynamodb),
        Meter(refs.tenants_table, resource=lambda: dynamodb),
    )


def provenance_admin(args: argparse.Namespace) -> ProvenanceAdmin:
    stack = Stack(args)
    return ProvenanceAdmin(stack.refs, stack.client("kms"), stack.client("secretsmanager"))


def run_provenance(args: argparse.Namespace) -> Any:
    admin = provenance_admin(args)
    if args.command == "csr":
        return admin.csr(args.subject)
    if args.command == "install-chain":
        try:
            pem = open(args.file, "rb").read()  # noqa: SIM115
        except OSError as exc:
            raise AdminError(f"Cannot read {args.file}: {exc.strerror}") from None
        return admin.install_chain(pem)
    if args.command == "self-sign":
        return admin.self_sign()
    return admin.show()


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
        "screening": tenant.screening.to_item(),
        "marks": tenant.marks,
        "marks_prompt": tenant.marks_prompt,
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
    if command == "set-screening":
        return _tenant_dict(admin.set_screening(args.tenant, _policy(args)))
    if command == "set-marks":
        prompt = True if args.with_prompt else False if args.without_prompt else KEEP
        on = KEEP if args.state is None else args.state == "on"
        return _tenant_dict(admin.set_marks(args.tenant, on=on, prompt=prompt))
    raise AdminError(f"Unknown command {command}")


def _policy(args: argparse.Namespace) -> ScreeningPolicy:
    return ScreeningPolicy(
        mode=ScreenMode(args.mode),
        terms=tuple(args.terms),
        patterns=tuple(args.patterns),
        default_terms=args.default_terms,
        guardrail_id=args.guardrail_id,
        guardrail_version=args.guardrail_version,
        on_failure=args.on_failure,
        record_prompt=args.record_prompt,
    )


def show(result: Any, as_json: bool) -> None:
    if isinstance(result, str) and not as_json:  # a PEM, as it is
        print(result, end="" if result.endswith("\n") else "\n")
        return
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
        if args.group == "verify":
            stack = provenance_admin(args) if args.local or args.stack_name else None
            report, generated = verify(args.file, args.trust_anchor, stack)
            show(report, args.json)
            return 0 if generated else 1
        show(run_provenance(args) if args.group == "provenance" else run(args, build_admin(args)), args.json)
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
