"""The tenant directory in memory, answering as adapters/dynamo_tenants.py's registry does: a key id belongs to its
tenant for ever, but identifies it only while it is the tenant's current key; a container remembers the owners of the
keys it has looked up."""

from __future__ import annotations

import copy
import threading
from typing import Any

from segmind_proxy.domain.errors import Dependency
from segmind_proxy.domain.tenants import RegistryError, Tenant
from segmind_proxy.domain.usage import Usage
from tests.fakes.errors import Breakable
from tests.fakes.ledger import FakeLedger


class FakeTenants(Breakable):
    """A `TenantDirectory`, with the registry's `create` and `update` to set it up. `ledger`: where a tenant's usage
    is read from alongside its profile (`by_api_key_with_usage`, `by_api_key_with`)."""

    dependency = Dependency.TENANT_REGISTRY

    def __init__(self, *tenants: Tenant, ledger: FakeLedger | None = None) -> None:
        super().__init__()
        self.tenants: dict[str, Tenant] = {}
        self.key_owners: dict[str, str] = {}  # every key id a tenant ever had
        self.ledger = ledger
        self._known: dict[str, str] = {}  # this container's memory of key owners
        self._lock = threading.Lock()
        for tenant in tenants:
            self.create(tenant)

    def create(self, tenant: Tenant) -> Tenant:
        with self._lock:
            if any(known.name == tenant.name for known in self.tenants.values()):
                raise RegistryError(f"A tenant named '{tenant.name}' already exists")
            self.tenants[tenant.tenant_id] = copy.deepcopy(tenant)
            self.key_owners[tenant.api_key_id] = tenant.tenant_id
        return tenant

    def update(self, tenant: Tenant) -> Tenant:
        with self._lock:
            self.tenants[tenant.tenant_id] = copy.deepcopy(tenant)
            self.key_owners.setdefault(tenant.api_key_id, tenant.tenant_id)
        return tenant

    def get(self, tenant_id: str) -> Tenant | None:
        self._may_fail("get")
        with self._lock:
            tenant = self.tenants.get(tenant_id)
            return copy.deepcopy(tenant) if tenant else None

    def known_owner(self, api_key_id: str) -> str | None:
        return self._known.get(api_key_id)

    def by_api_key(self, api_key_id: str) -> Tenant | None:
        self._may_fail("by_api_key")
        tenant_id = self.key_owners.get(api_key_id)
        if tenant_id is None:
            return None
        self._known[api_key_id] = tenant_id
        tenant = self.get(tenant_id)
        return tenant if tenant and tenant.api_key_id == api_key_id else None

    def by_api_key_with_usage(self, api_key_id: str, month: str) -> tuple[Tenant | None, Usage | None]:
        """The tenant, and its month's usage when it comes in the same round trip (a key this container knows)."""
        known = api_key_id in self._known
        tenant = self.by_api_key(api_key_id)
        if not known or tenant is None or self.ledger is None:
            return tenant, None
        return tenant, self.ledger.usage(tenant.tenant_id, month)

    def by_api_key_with(self, api_key_id: str, sort_key: str) -> tuple[Tenant | None, dict[str, Any] | None]:
        """The registry's form of `by_api_key_with_usage`: the tenant's item `sort_key` (`USAGE#<month>`) as stored,
        None when it was not read."""
        tenant, usage = self.by_api_key_with_usage(api_key_id, sort_key.removeprefix("USAGE#"))
        if usage is None:
            return tenant, None
        counters = vars(usage)
        return tenant, {name: value for name, value in counters.items() if name not in ("tenant_id", "month")}
