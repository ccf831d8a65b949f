from concurrent.futures import ThreadPoolExecutor

import pytest

from segmind_proxy.domain.tenants import RegistryError, TenantStatus
from segmind_proxy.flows.access import AccessRefused, authorize, authorize_reading
from tests.support.aws import make_tenant


def test_created_tenant_is_found_by_key_name_and_id(registry):
    tenant = make_tenant(registry, budget_credits=1.5, budget_images=10, allowed_origins=["https://a.example"])
    for found in (registry.by_api_key("key-acme"), registry.by_name("acme"), registry.get(tenant.tenant_id)):
        assert found == tenant
    assert tenant.created_at


def test_unknown_key_or_name_is_none(registry):
    assert registry.by_api_key("nope") is None
    assert registry.by_name("nope") is None
    with pytest.raises(RegistryError, match="No tenant"):
        registry.resolve("nope")


def test_names_are_unique_and_well_formed(registry):
    make_tenant(registry)
    with pytest.raises(RegistryError, match="already exists"):
        make_tenant(registry, key_id="key-2")
    with pytest.raises(RegistryError, match="Invalid tenant name"):
        make_tenant(registry, name="Bad Name!", key_id="key-3")


def test_rotated_away_key_no_longer_identifies_the_tenant(registry):
    tenant = make_tenant(registry)
    assert registry.by_api_key("key-acme") == tenant  # cached in this container
    registry.replace_key(tenant, "key-new")
    assert registry.by_api_key("key-acme") is None
    assert registry.by_api_key("key-new").tenant_id == tenant.tenant_id


def test_suspension_applies_on_the_next_request_despite_caching(registry):
    tenant = make_tenant(registry)
    assert authorize(registry, "key-acme", None) == tenant
    tenant.status = TenantStatus.SUSPENDED
    registry.update(tenant)
    with pytest.raises(AccessRefused) as refused:
        authorize(registry, "key-acme", None)
    assert "suspended" in refused.value.message


def test_deleted_tenant_is_refused(registry):
    tenant = make_tenant(registry)
    authorize(registry, "key-acme", None)
    registry.delete(tenant)
    with pytest.raises(AccessRefused, match="not registered"):
        authorize(registry, "key-acme", None)
    assert registry.by_name("acme") is None


def test_allowed_origins_restrict_browser_keys(registry):
    make_tenant(registry, allowed_origins=["https://app.example"])
    assert authorize(registry, "key-acme", "https://app.example")
    for origin in ("https://evil.example", None):
        with pytest.raises(AccessRefused) as refused:
            authorize(registry, "key-acme", origin)
        assert refused.value.cors is False


def test_tenancy_off_or_keyless_routes_need_no_tenant(registry):
    assert authorize(None, "key-acme", None) is None
    assert authorize(registry, None, None) is None


def test_a_table_resource_is_built_once_per_thread(registry):
    first = registry.table
    assert registry.table is first  # boto3 builds a class per `.Table()`: not on every call
    with ThreadPoolExecutor(1) as pool:
        other = pool.submit(lambda: registry.table).result()
    assert other is not first  # resources are not thread-safe: each thread has its own
    make_tenant(registry)
    assert registry.by_api_key("key-acme") is not None


def test_a_profile_changed_since_it_was_read_is_not_overwritten(registry):
    from segmind_proxy.domain.tenants import RegistryConflict

    tenant = make_tenant(registry)
    first, second = registry.get(tenant.tenant_id), registry.get(tenant.tenant_id)
    first.status = TenantStatus.SUSPENDED
    registry.update(first)
    second.budget_images = 9  # read before the suspension
    with pytest.raises(RegistryConflict, match="changed meanwhile"):
        registry.update(second)
    with pytest.raises(RegistryConflict):
        registry.replace_key(second, "key-new")
    with pytest.raises(RegistryConflict):
        registry.delete(second)
    stored = registry.get(tenant.tenant_id)
    assert stored.status is TenantStatus.SUSPENDED and stored.budget_images is None
    assert stored.api_key_id == second.api_key_id == "key-acme"  # the refused rotation left both as they were


def test_a_profile_stored_before_versions_can_still_be_updated(registry):
    tenant = make_tenant(registry)
    registry.table.update_item(
        Key={"pk": f"TENANT#{tenant.tenant_id}", "sk": "PROFILE"}, UpdateExpression="REMOVE version"
    )
    legacy = registry.get(tenant.tenant_id)
    assert legacy.version == 0
    legacy.budget_images = 3
    assert registry.update(legacy).version == 1
    assert registry.get(tenant.tenant_id).budget_images == 3


def test_a_known_keys_tenant_is_read_with_another_of_its_items_in_one_round_trip(registry):
    tenant = make_tenant(registry)
    calls: list[str] = []
    registry.table.meta.client.meta.events.register("before-call.dynamodb", lambda model, **_: calls.append(model.name))
    assert registry.by_api_key_with("key-acme", "USAGE#2026-11") == (tenant, None)  # key not yet known here: not read
    registry.table.put_item(Item={"pk": f"TENANT#{tenant.tenant_id}", "sk": "USAGE#2026-11", "requests": 3})
    calls.clear()
    found, item = registry.by_api_key_with("key-acme", "USAGE#2026-11")
    assert found == tenant and item["requests"] == 3 and calls == ["BatchGetItem"]
    assert registry.by_api_key_with("key-acme", "USAGE#2026-10") == (tenant, {})  # read: there is none
    registry.replace_key(tenant, "key-new")
    assert registry.by_api_key_with("key-acme", "USAGE#2026-11")[0] is None
    tenant = registry.get(tenant.tenant_id)
    tenant.status = TenantStatus.SUSPENDED
    registry.update(tenant)
    with pytest.raises(AccessRefused, match="suspended"):
        authorize_reading(registry, "key-new", None, "2026-11")
    assert authorize_reading(None, "key-new", None, "2026-11") == (None, None)


def test_a_profile_left_unread_by_a_throttled_batch_is_read_alone(registry, monkeypatch):
    tenant = make_tenant(registry)
    registry.by_api_key("key-acme")
    pk = f"TENANT#{tenant.tenant_id}"
    unread = {"Responses": {}, "UnprocessedKeys": {registry.table_name: {"Keys": [{"pk": pk, "sk": "PROFILE"}]}}}
    monkeypatch.setattr(type(registry._resource()), "batch_get_item", lambda self, **_: unread, raising=False)
    assert registry.by_api_key_with("key-acme", "USAGE#2026-11") == (tenant, None)
