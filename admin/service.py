"""Tenant administration: API Gateway keys and usage-plan keys plus the registry, kept in step.

The same code drives a deployed stack (found by its name and CloudFormation outputs) and the local stack
(moto plays CloudFormation, API Gateway and DynamoDB there)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any, TypeVar
from urllib.parse import urlsplit

from botocore.exceptions import ClientError

from segmind_proxy.adapters.dynamo_tenants import TenantRegistry
from segmind_proxy.adapters.dynamo_usage import Meter
from segmind_proxy.domain.catalog import bundled_catalog
from segmind_proxy.domain.screening import ScreeningPolicy, check_policy
from segmind_proxy.domain.tenants import (
    RegistryConflict,
    RegistryError,
    Tenant,
    TenantStatus,
    new_tenant_id,
    new_webhook_secret,
)
from segmind_proxy.domain.usage import Usage, current_month, is_month

PLAN_OUTPUT_SUFFIX = "UsagePlanId"
# Times a change is re-read and re-applied when another operator changed the profile in between.
CONFLICT_ATTEMPTS = 5
T = TypeVar("T")


class AdminError(Exception):
    """Shown to the operator as is."""


class Keep(Enum):
    """A setting left as it is stored."""

    KEEP = "keep"


KEEP = Keep.KEEP


@dataclass(frozen=True)
class StackRefs:
    stack_name: str
    rest_api_id: str
    tenants_table: str
    plans: dict[str, str]  # plan name (free, pro, enterprise) -> usage plan id
    api_base_url: str
    provenance_key_id: str = ""  # the KMS key that signs images' manifests (stacks before marks have none)
    provenance_chain_secret: str = ""

    @classmethod
    def from_outputs(cls, stack_name: str, outputs: dict[str, str]) -> StackRefs:
        plans = {
            k.removesuffix(PLAN_OUTPUT_SUFFIX).lower(): v for k, v in outputs.items() if k.endswith(PLAN_OUTPUT_SUFFIX)
        }
        missing = [k for k in ("RestApiId", "TenantsTableName") if k not in outputs]
        if missing or not plans:
            raise AdminError(f"Stack '{stack_name}' lacks outputs {missing or ['*UsagePlanId']}: is it this gateway?")
        return cls(
            stack_name,
            outputs["RestApiId"],
            outputs["TenantsTableName"],
            plans,
            outputs.get("ApiBaseUrl", ""),
            outputs.get("ProvenanceKeyId", ""),
            outputs.get("ProvenanceChainSecretArn", ""),
        )

    @classmethod
    def find(cls, cloudformation: Any, stack_name: str) -> StackRefs:
        try:
            stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
        except ClientError as exc:
            if "does not exist" in str(exc):
                raise AdminError(f"No stack named '{stack_name}' in this account and region") from None
            raise
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
        return cls.from_outputs(stack_name, outputs)


@dataclass
class CreatedTenant:
    tenant: Tenant
    api_key: str  # shown once


class TenantAdmin:
    def __init__(self, refs: StackRefs, apigw: Any, registry: TenantRegistry, meter: Meter) -> None:
        self.refs = refs
        self.apigw = apigw
        self.registry = registry
        self.meter = meter

    # -- lookups ---------------------------------------------------------------
    def tenant(self, name_or_id: str) -> Tenant:
        try:
            return self.registry.resolve(name_or_id)
        except RegistryError as exc:
            raise AdminError(str(exc)) from None

    def tenants(self, *, include_deleted: bool = False) -> list[Tenant]:
        return sorted(self.registry.all(include_deleted=include_deleted), key=lambda t: (t.name, t.deleted))

    def live_tenant(self, name_or_id: str) -> Tenant:
        """A tenant that can still be changed: a deleted one is kept for billing only."""
        tenant = self.tenant(name_or_id)
        if tenant.deleted:
            raise AdminError(
                f"Tenant '{tenant.name}' ({tenant.tenant_id}) was deleted at {tenant.deleted_at}; it is kept for "
                "billing only and cannot be changed"
            )
        return tenant

    def usage(self, tenant: Tenant, month: str | None = None) -> Usage:
        return self.meter.usage(tenant.tenant_id, month)

    def _plan_id(self, plan: str) -> str:
        if plan not in self.refs.plans:
            raise AdminError(f"Unknown plan '{plan}': choose one of {', '.join(sorted(self.refs.plans))}")
        return self.refs.plans[plan]

    # -- changes ---------------------------------------------------------------
    def create(
        self,
        name: str,
        plan: str,
        *,
        budget_credits: float | None = None,
        budget_images: int | None = None,
        allowed_origins: list[str] | None = None,
        key_value: str | None = None,
    ) -> CreatedTenant:
        plan_id = self._plan_id(plan)
        _check_budgets(budget_credits, budget_images)
        _check_origins(allowed_origins or [])
        if self.registry.by_name(name):
            raise AdminError(f"A tenant named '{name}' already exists")
        tenant_id = new_tenant_id()
        key = self._new_key(name, tenant_id, plan_id, key_value)
        tenant = Tenant(
            tenant_id=tenant_id,
            name=name,
            plan=plan,
            plan_models=self.registry.plan_models(plan),
            api_key_id=key["id"],
            budget_credits=budget_credits,
            budget_images=budget_images,
            allowed_origins=list(dict.fromkeys(allowed_origins or [])),
        )
        try:
            self.registry.create(tenant)
        except BaseException as exc:
            self.apigw.delete_api_key(apiKey=key["id"])  # no orphan key left behind, whatever failed
            if isinstance(exc, RegistryError):
                raise AdminError(str(exc)) from None
            raise
        return CreatedTenant(tenant, key["value"])

    def rotate_key(self, name_or_id: str) -> CreatedTenant:
        """A new key on the same plan; the old key stops working at once."""

        def rotate(tenant: Tenant) -> CreatedTenant:
            old_key_id = tenant.api_key_id
            key = self._new_key(tenant.name, tenant.tenant_id, self._plan_id(tenant.plan), None)
            try:
                self.registry.replace_key(tenant, key["id"])
            except RegistryConflict:
                self.apigw.delete_api_key(apiKey=key["id"])  # no orphan key; the next attempt makes another
                raise
            self.apigw.delete_api_key(apiKey=old_key_id)
            return CreatedTenant(tenant, key["value"])

        return self._until_unchanged(name_or_id, rotate)

    def suspend(self, name_or_id: str) -> Tenant:
        return self._set_status(name_or_id, TenantStatus.SUSPENDED)

    def resume(self, name_or_id: str) -> Tenant:
        return self._set_status(name_or_id, TenantStatus.ACTIVE)

    def delete(self, name_or_id: str) -> Tenant:
        """Removes the key and frees the name; the tenant stays, marked deleted, with its usage, for billing."""

        def delete(tenant: Tenant) -> Tenant:
            deleted = self.registry.delete(tenant)  # a conflict (a rotation, say) retries with the key stored now
            try:
                self.apigw.delete_api_key(apiKey=tenant.api_key_id)
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "NotFoundException":
                    raise
            return deleted

        return self._until_unchanged(name_or_id, delete)

    def set_plan(self, name_or_id: str, plan: str) -> Tenant:
        tenant = self.live_tenant(name_or_id)
        new_plan_id = self._plan_id(plan)
        if plan == tenant.plan:
            return tenant
        self.apigw.create_usage_plan_key(usagePlanId=new_plan_id, keyId=tenant.api_key_id, keyType="API_KEY")
        try:
            self.apigw.delete_usage_plan_key(usagePlanId=self._plan_id(tenant.plan), keyId=tenant.api_key_id)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "NotFoundException":
                raise
        plan_models = self.registry.plan_models(plan)

        def move(tenant: Tenant) -> None:
            tenant.plan, tenant.plan_models = plan, plan_models

        return self._change(name_or_id, move)

    def set_budget(
        self, name_or_id: str, *, credits: float | Keep | None = KEEP, images: int | Keep | None = KEEP
    ) -> Tenant:
        """None removes a budget; KEEP leaves it as stored when the change is written (not as first read)."""
        if isinstance(credits, Keep) and isinstance(images, Keep):
            raise AdminError("Nothing to change: give a credit and/or an image budget ('none' removes one)")
        _check_budgets(None if isinstance(credits, Keep) else credits, None if isinstance(images, Keep) else images)

        def apply(tenant: Tenant) -> None:
            if not isinstance(credits, Keep):
                tenant.budget_credits = credits
            if not isinstance(images, Keep):
                tenant.budget_images = images

        return self._change(name_or_id, apply)

    # -- models ----------------------------------------------------------------
    def plan_models(self, plan: str) -> list[str]:
        self._plan_id(plan)
        return self.registry.plan_models(plan)

    def set_plan_models(self, plan: str, models: list[str]) -> list[Tenant]:
        """The models a plan includes (none: every model), stamped on each of its tenants' profiles, which the
        function reads on every request: it takes effect at once, with no read more per request."""
        self._plan_id(plan)
        chosen = _check_models(models)
        self.registry.set_plan_models(plan, chosen)
        on_plan = [t for t in self.tenants() if t.plan == plan]
        return [self._change(t.tenant_id, lambda t: setattr(t, "plan_models", chosen)) for t in on_plan]

    def set_models(self, name_or_id: str, models: list[str]) -> Tenant:
        """The tenant's own models, in place of its plan's (none: its plan's again)."""
        chosen = _check_models(models)
        return self._change(name_or_id, lambda t: setattr(t, "models", chosen))

    # -- trust and safety ------------------------------------------------------
    def set_screening(self, name_or_id: str, policy: ScreeningPolicy) -> Tenant:
        """How the tenant's prompts are screened, replacing its policy whole; the next request reads it."""
        problems = check_policy(policy)
        if problems:
            raise AdminError("This screening policy cannot be used: " + "; ".join(problems))
        return self._change(name_or_id, lambda t: setattr(t, "screening", policy))

    def set_marks(self, name_or_id: str, *, on: bool | Keep = KEEP, prompt: bool | Keep = KEEP) -> Tenant:
        """Whether the tenant's images are marked as AI-generated, and whether their manifest holds the prompt."""
        if isinstance(on, Keep) and isinstance(prompt, Keep):
            raise AdminError("Nothing to change: say on or off, and/or --with-prompt or --without-prompt")

        def apply(tenant: Tenant) -> None:
            if not isinstance(on, Keep):
                tenant.marks = on
            if not isinstance(prompt, Keep):
                tenant.marks_prompt = prompt

        return self._change(name_or_id, apply)

    def rotate_webhook_secret(self, name_or_id: str) -> Tenant:
        return self._change(name_or_id, lambda t: setattr(t, "webhook_secret", new_webhook_secret()))

    def set_origins(self, name_or_id: str, origins: list[str]) -> Tenant:
        _check_origins(origins)
        unique = list(dict.fromkeys(origins))  # a repeated origin is the same origin
        return self._change(name_or_id, lambda t: setattr(t, "allowed_origins", unique))

    def billing_report(self, month: str | None = None) -> dict[str, Any]:
        """Every tenant's usage for a month, and the account's real balance drop to reconcile estimates against."""
        month = month or current_month()
        if not is_month(month):
            raise AdminError(f"Month '{month}' is not YYYY-MM")
        rows = [(t, self.meter.usage(t.tenant_id, month)) for t in self.tenants(include_deleted=True)]
        # A deleted tenant is listed in the months it used, under its name: deleting one mid-month loses no billing.
        rows = [(t, u) for t, u in rows if not t.deleted or u.recorded]
        spent = sum(u.credits_spent for _, u in rows)
        balance = self.meter.balance(month)
        actual = balance["first_balance"] - balance["last_balance"] if balance else None
        return {
            "month": month,
            "tenants": [
                {"tenant_id": t.tenant_id, "name": t.name, "plan": t.plan, "status": t.status.value, **u.figures(t)}
                for t, u in rows
            ],
            "credits_spent_total": round(spent, 6),
            "segmind_balance": balance,
            # Balance drop seen by the gateway (from its first call this month; includes the first call's cost
            # only approximately) over what the price table estimated: tune the models' prices (their data files, or PRICE_TABLE) when this drifts from 1.
            "actual_over_estimated": round(actual / spent, 4) if actual is not None and spent else None,
        }

    # -- helpers ---------------------------------------------------------------
    def _new_key(self, name: str, tenant_id: str, plan_id: str, value: str | None) -> dict[str, Any]:
        args: dict[str, Any] = {"name": f"{name}-{tenant_id}", "enabled": True, "description": f"tenant {name}"}
        if value:
            args["value"] = value
        key = self.apigw.create_api_key(**args)
        try:
            self.apigw.create_usage_plan_key(usagePlanId=plan_id, keyId=key["id"], keyType="API_KEY")
        except ClientError:
            self.apigw.delete_api_key(apiKey=key["id"])
            raise
        return key

    def _enable_key(self, key_id: str) -> None:
        self.apigw.update_api_key(
            apiKey=key_id, patchOperations=[{"op": "replace", "path": "/enabled", "value": "true"}]
        )

    def _set_status(self, name_or_id: str, status: TenantStatus) -> Tenant:
        """The function reads the registry on every request, so this takes effect at once. The key stays enabled in
        API Gateway either way, so that a suspended tenant is told so by the function (403, "suspended; contact the
        operator") instead of being refused as an unknown key; a key that an earlier version of this command
        disabled on suspending is enabled again."""
        tenant = self._change(name_or_id, lambda t: setattr(t, "status", status))
        self._enable_key(tenant.api_key_id)
        return tenant

    def _change(self, name_or_id: str, apply: Callable[[Tenant], None]) -> Tenant:
        """Read, change, write the profile (see `_until_unchanged`)."""

        def change(tenant: Tenant) -> Tenant:
            apply(tenant)
            try:
                return self.registry.update(tenant)
            except RegistryConflict:
                raise
            except RegistryError as exc:
                raise AdminError(str(exc)) from None

        return self._until_unchanged(name_or_id, change)

    def _until_unchanged(self, name_or_id: str, step: Callable[[Tenant], T]) -> T:
        """`step` on a fresh read of the profile. Its registry write names the version read, so a profile changed
        meanwhile (another operator, another machine) is read again and `step` runs again: no one's change is lost."""
        for _ in range(CONFLICT_ATTEMPTS):
            try:
                return step(self.live_tenant(name_or_id))
            except RegistryConflict:
                continue
        raise AdminError(f"Tenant '{name_or_id}' changed {CONFLICT_ATTEMPTS} times while this ran; try again")


# Far above any real month, and well inside what DynamoDB numbers hold exactly (38 digits, 10^125 at most).
MAX_BUDGET = 1_000_000_000


def _check_budgets(credits: float | None, images: int | None) -> None:
    if credits is not None and credits < 0:
        raise AdminError("A credit budget cannot be negative")
    if credits is not None and not (math.isfinite(credits) and credits <= MAX_BUDGET):
        raise AdminError(f"A credit budget must be a number of credits up to {MAX_BUDGET:,} (got {credits})")
    if images is not None and images < 0:
        raise AdminError("An image budget cannot be negative")
    if images is not None and images > MAX_BUDGET:
        raise AdminError(f"An image budget must be at most {MAX_BUDGET:,} images (got {images})")


def _check_models(models: list[str]) -> list[str]:
    """Catalog slugs (an OpenAI id reads as its slug), each once, in the order given."""
    catalog = bundled_catalog()
    unknown = [name for name in models if catalog.find(name) is None]
    if unknown:
        known = ", ".join(model.slug for model in catalog)
        raise AdminError(f"No model named {', '.join(repr(n) for n in unknown)}: the catalog holds {known}")
    return list(dict.fromkeys(catalog.find(name).slug for name in models))  # type: ignore[union-attr]


def _check_origins(origins: list[str]) -> None:
    for origin in origins:
        parts = urlsplit(origin)
        if parts.scheme not in ("https", "http") or not parts.netloc or parts.path or parts.query or parts.fragment:
            raise AdminError(f"'{origin}' is not an origin: use scheme://host[:port] with no path")
