"""The tenant registry in DynamoDB: profiles, API key ids and names, in one table keyed by `pk`/`sk`.

Items:
  TENANT#{id} / PROFILE       the tenant (name, plan, status, budgets, allowed origins, current key id, version); a
                              deleted tenant's stays, with status `deleted`, so its usage is still billed by name
  APIKEY#{api_key_id} / TENANT which tenant an API Gateway key belongs to (never changes for a key id); removed when
                              the tenant is deleted
  NAME#{name} / TENANT        reserves a name, so names are unique among tenants not deleted
  PLAN#{plan} / MODELS        the models a plan includes (none: every model); stamped on its tenants' profiles too,
                              so the request path reads no more than the profile
  TENANT#{id} / USAGE#{yyyy-mm}  that month's usage (see dynamo_usage.py), kept when the tenant is deleted
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

from segmind_proxy.adapters.aws_clients import DynamoTable, condition_failed, raising_outages
from segmind_proxy.adapters.dynamo_usage import Meter
from segmind_proxy.domain.errors import Dependency
from segmind_proxy.domain.screening import ScreeningPolicy
from segmind_proxy.domain.tenants import NAME_PATTERN, RegistryConflict, RegistryError, Tenant, TenantStatus
from segmind_proxy.domain.usage import Usage


def tenant_item(tenant: Tenant) -> dict[str, Any]:
    item = {k: v for k, v in asdict(tenant).items() if v is not None and v != []}
    item["status"] = tenant.status.value
    item["screening"] = tenant.screening.to_item()
    if tenant.budget_credits is not None:
        item["budget_credits"] = Decimal(str(tenant.budget_credits))
    return {"pk": f"TENANT#{tenant.tenant_id}", "sk": "PROFILE", **item}


def tenant_from_item(item: dict[str, Any]) -> Tenant:
    return Tenant(
        tenant_id=item["tenant_id"],
        name=item["name"],
        plan=item["plan"],
        api_key_id=item["api_key_id"],
        status=TenantStatus(item.get("status", "active")),
        budget_credits=float(item["budget_credits"]) if "budget_credits" in item else None,
        budget_images=int(item["budget_images"]) if "budget_images" in item else None,
        allowed_origins=list(item.get("allowed_origins", [])),
        created_at=item.get("created_at", ""),
        deleted_at=item.get("deleted_at", ""),
        models=list(item.get("models", [])),
        plan_models=list(item.get("plan_models", [])),
        webhook_secret=item.get("webhook_secret", ""),
        screening=ScreeningPolicy.from_item(item.get("screening")),  # a profile from before screening: the default
        marks=bool(item.get("marks", True)),
        marks_prompt=bool(item.get("marks_prompt", False)),
        version=int(item.get("version", 0)),
    )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@raising_outages(Dependency.TENANT_REGISTRY)
class TenantRegistry(DynamoTable):
    def __init__(self, table_name: str, resource: Callable[[], Any] | None = None) -> None:
        super().__init__(table_name, resource)
        # A key id belongs to one tenant for ever, so this mapping is safe to keep per container.
        self._key_owner: dict[str, str] = {}

    # -- reads ---------------------------------------------------------------
    def get(self, tenant_id: str) -> Tenant | None:
        item = self.table.get_item(Key={"pk": f"TENANT#{tenant_id}", "sk": "PROFILE"}, ConsistentRead=True).get("Item")
        return tenant_from_item(item) if item else None

    def known_owner(self, api_key_id: str) -> str | None:
        """The tenant id of a key this container has already looked up (a key id never changes owner), else None."""
        return self._key_owner.get(api_key_id)

    def by_api_key(self, api_key_id: str) -> Tenant | None:
        """The tenant owning an API key id. The profile is read consistently, so a suspension applies at once."""
        tenant_id = self._key_owner.get(api_key_id)
        if tenant_id is None:
            item = self.table.get_item(Key={"pk": f"APIKEY#{api_key_id}", "sk": "TENANT"}, ConsistentRead=True).get(
                "Item"
            )
            if not item:
                return None
            tenant_id = self._key_owner[api_key_id] = item["tenant_id"]
        return self._keyed_by(self.get(tenant_id), api_key_id)

    def by_api_key_with(self, api_key_id: str, sort_key: str) -> tuple[Tenant | None, dict[str, Any] | None]:
        """`by_api_key`, plus the tenant's item `sort_key` (such as a month's usage) in the same round trip when this
        container knows the key's tenant already. The item is None when it was not read, {} when it does not exist."""
        tenant_id = self._key_owner.get(api_key_id)
        if tenant_id is None:
            return self.by_api_key(api_key_id), None
        pk = f"TENANT#{tenant_id}"
        answer = self._resource().batch_get_item(
            RequestItems={
                self.table_name: {
                    "Keys": [{"pk": pk, "sk": "PROFILE"}, {"pk": pk, "sk": sort_key}],
                    "ConsistentRead": True,
                }
            }
        )
        items = {item["sk"]: item for item in answer.get("Responses", {}).get(self.table_name, [])}
        unread = {key["sk"] for key in answer.get("UnprocessedKeys", {}).get(self.table_name, {}).get("Keys", [])}
        if "PROFILE" in unread:  # throttled in part: the profile alone, as usual
            return self.by_api_key(api_key_id), None
        profile = items.get("PROFILE")
        tenant = self._keyed_by(tenant_from_item(profile) if profile else None, api_key_id)
        return tenant, None if sort_key in unread else items.get(sort_key, {})

    def by_api_key_with_usage(self, api_key_id: str, month: str) -> tuple[Tenant | None, Usage | None]:
        """`by_api_key_with` the month's usage: None when it was not read (the tenant's key is new to this
        container, or the read was throttled in part)."""
        tenant, item = self.by_api_key_with(api_key_id, Meter.sort_key(month))
        return tenant, Usage.from_item(tenant.tenant_id, month, item) if tenant and item is not None else None

    @staticmethod
    def _keyed_by(tenant: Tenant | None, api_key_id: str) -> Tenant | None:
        # A rotated-away key id still maps to its tenant (in this container's memory too), but is no longer the
        # tenant's key; a deleted tenant has no key.
        return tenant if tenant and tenant.api_key_id == api_key_id and not tenant.deleted else None

    def by_name(self, name: str) -> Tenant | None:
        item = self.table.get_item(Key={"pk": f"NAME#{name}", "sk": "TENANT"}, ConsistentRead=True).get("Item")
        return self.get(item["tenant_id"]) if item else None

    def plan_models(self, plan: str) -> list[str]:
        """The models a plan includes (slugs); empty: every model."""
        item = self.table.get_item(Key={"pk": f"PLAN#{plan}", "sk": "MODELS"}, ConsistentRead=True).get("Item")
        return list(item.get("models", [])) if item else []

    def set_plan_models(self, plan: str, models: list[str]) -> None:
        self.table.put_item(Item={"pk": f"PLAN#{plan}", "sk": "MODELS", "models": models})

    def resolve(self, name_or_id: str) -> Tenant:
        tenant = self.get(name_or_id) if name_or_id.startswith("t_") else self.by_name(name_or_id)
        if tenant is None:
            raise RegistryError(f"No tenant named or with id '{name_or_id}'")
        return tenant

    def all(self, *, include_deleted: bool = False) -> Iterator[Tenant]:
        """Every tenant; deleted ones too when asked (a billing report still names them)."""
        for tenant in self._profiles():
            if include_deleted or not tenant.deleted:
                yield tenant

    def _profiles(self) -> Iterator[Tenant]:
        kwargs: dict[str, Any] = {
            "FilterExpression": "sk = :profile",
            "ExpressionAttributeValues": {":profile": "PROFILE"},
        }
        while True:
            page = self.table.scan(**kwargs)
            yield from (tenant_from_item(item) for item in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    # -- writes --------------------------------------------------------------
    def create(self, tenant: Tenant) -> Tenant:
        if not NAME_PATTERN.match(tenant.name):
            raise RegistryError(
                f"Invalid tenant name '{tenant.name}': use 2-63 lower-case letters, digits, '.', '_' or '-'"
            )
        tenant.created_at = tenant.created_at or _now()
        self._transact(
            [
                self._put({"pk": f"NAME#{tenant.name}", "sk": "TENANT", "tenant_id": tenant.tenant_id}, new=True),
                self._put(tenant_item(tenant), new=True),
                self._put({"pk": f"APIKEY#{tenant.api_key_id}", "sk": "TENANT", "tenant_id": tenant.tenant_id}),
            ],
            conflict=f"A tenant named '{tenant.name}' already exists",
        )
        return tenant

    def update(self, tenant: Tenant) -> Tenant:
        """Write the whole profile, only if it is still the version `tenant` was read at (RegistryConflict)."""
        try:
            self.table.put_item(**self._versioned_put(tenant))
        except ClientError as exc:
            if not condition_failed(exc):
                raise
            if self.get(tenant.tenant_id) is None:
                raise RegistryError(f"No tenant with id '{tenant.tenant_id}'") from None
            raise RegistryConflict(f"Tenant '{tenant.name}' changed meanwhile; try again") from None
        tenant.version += 1
        return tenant

    def replace_key(self, tenant: Tenant, new_key_id: str) -> Tenant:
        old_key_id, tenant.api_key_id = tenant.api_key_id, new_key_id
        try:
            self._transact(
                [
                    self._put({"pk": f"APIKEY#{new_key_id}", "sk": "TENANT", "tenant_id": tenant.tenant_id}),
                    {"Put": {"TableName": self.table_name, **self._versioned_put(tenant)}},
                ],
                conflict=f"Tenant '{tenant.name}' changed meanwhile; try again",
            )
        except RegistryError as exc:
            tenant.api_key_id = old_key_id
            raise RegistryConflict(str(exc)) from None
        tenant.version += 1
        return tenant

    @classmethod
    def _versioned_put(cls, tenant: Tenant) -> dict[str, Any]:
        """The profile at the next version, conditional on the stored one being the version read."""
        return {"Item": tenant_item(tenant) | {"version": tenant.version + 1}, **cls._same_version(tenant)}

    @staticmethod
    def _same_version(tenant: Tenant) -> dict[str, Any]:
        """The condition that the stored profile is still the version `tenant` was read at."""
        return {
            # A profile written before profiles had versions reads as version 0.
            "ConditionExpression": "attribute_exists(pk) AND (version = :read OR attribute_not_exists(version))",
            "ExpressionAttributeValues": {":read": tenant.version},
        }

    def delete(self, tenant: Tenant) -> Tenant:
        """Frees the name and the key id; the profile stays, marked deleted, and its usage items stay, so the tenant is
        still billed by name. RegistryConflict if the profile is no longer the version read (its key may have been
        rotated meanwhile)."""
        tenant.status, tenant.deleted_at = TenantStatus.DELETED, _now()
        table = self.table_name
        try:
            self._transact(
                [
                    {"Put": {"TableName": table, **self._versioned_put(tenant)}},
                    {"Delete": {"TableName": table, "Key": {"pk": f"NAME#{tenant.name}", "sk": "TENANT"}}},
                    {"Delete": {"TableName": table, "Key": {"pk": f"APIKEY#{tenant.api_key_id}", "sk": "TENANT"}}},
                ],
                conflict=f"Tenant '{tenant.name}' changed meanwhile; try again",
            )
        except RegistryError as exc:
            raise RegistryConflict(str(exc)) from None
        tenant.version += 1
        return tenant

    def _put(self, item: dict[str, Any], *, new: bool = False) -> dict[str, Any]:
        put: dict[str, Any] = {"TableName": self.table_name, "Item": item}
        if new:
            put["ConditionExpression"] = "attribute_not_exists(pk)"
        return {"Put": put}

    def _transact(self, items: list[dict[str, Any]], *, conflict: str) -> None:
        try:
            self._resource().meta.client.transact_write_items(TransactItems=items)
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "TransactionCanceledException":
                raise RegistryError(conflict) from None
            raise
