"""Who is calling: the tenant behind API Gateway's `apiKeyId` (never anything the client sends), and whether it may."""

from __future__ import annotations

from segmind_proxy.domain.catalog import ModelSpec
from segmind_proxy.domain.errors import AccessRefused, ModelNotAllowed
from segmind_proxy.domain.images import namespace_for
from segmind_proxy.domain.ports import TenantDirectory
from segmind_proxy.domain.tenants import Tenant
from segmind_proxy.domain.usage import Usage


def namespace_of(tenant: Tenant | None, api_key_id: str | None) -> str:
    """Where a caller's images and jobs live: its tenant (stable across key rotation), else its API key."""
    return tenant.tenant_id if tenant else namespace_for(api_key_id)


def known_namespace(registry: TenantDirectory | None, api_key_id: str | None) -> str | None:
    """A caller's namespace when it is known without a round trip, before `authorize` decides (None: not yet)."""
    if not api_key_id:
        return None
    if registry is None:
        return namespace_for(api_key_id)
    return registry.known_owner(api_key_id)


def authorize(registry: TenantDirectory | None, api_key_id: str | None, origin: str | None) -> Tenant | None:
    """The calling tenant, or None where tenancy is off (no registry) or the route needs no key."""
    if registry is None or not api_key_id:
        return None
    return _admitted(registry.by_api_key(api_key_id), origin)


def authorize_reading(
    registry: TenantDirectory | None, api_key_id: str | None, origin: str | None, month: str
) -> tuple[Tenant | None, Usage | None]:
    """`authorize`, and the tenant's usage of `month` read alongside its profile when that costs no round trip
    (see `TenantDirectory.by_api_key_with_usage`); None when it was not read."""
    if registry is None or not api_key_id:
        return None, None
    tenant, usage = registry.by_api_key_with_usage(api_key_id, month)
    return _admitted(tenant, origin), usage


def check_model(tenant: Tenant | None, model: ModelSpec) -> None:
    """Refuse, before any work, a model the tenant's plan (or its own list) does not include."""
    if tenant is not None and not tenant.may_use(model.slug):
        raise ModelNotAllowed(
            f"Tenant '{tenant.name}' may not use the model '{model.slug}': its plan does not include it (GET "
            "/v1/models lists the models it may use); ask the operator to add it"
        )


def _admitted(tenant: Tenant | None, origin: str | None) -> Tenant:
    if tenant is None:
        raise AccessRefused("This API key is not registered with any tenant")
    if not tenant.active:
        raise AccessRefused(f"Tenant '{tenant.name}' is suspended; contact the operator")
    if not tenant.origin_allowed(origin):
        shown = origin or "no Origin header"
        raise AccessRefused(f"This key may only be used from its allowed origins (got {shown})", cors=False)
    return tenant
