"""Every port has its in-memory fake in tests/fakes, and each fake is its port: the same methods, parameters,
defaults and annotations (a static checker reads the assignments below the same way)."""

from __future__ import annotations

import inspect

import pytest

from segmind_proxy.domain import ports
from segmind_proxy.domain.ports import (
    Clock,
    Deferrer,
    Idempotency,
    ImageStore,
    JobQueue,
    JobStore,
    Leases,
    Marker,
    PromptScreen,
    TenantDirectory,
    Upstream,
    UsageLedger,
    Webhooks,
)
from tests.fakes import (
    FakeClock,
    FakeDeferrer,
    FakeIdempotency,
    FakeImageStore,
    FakeJobQueue,
    FakeJobStore,
    FakeLeases,
    FakeLedger,
    FakeTenants,
    FakeUpstream,
    FakeWebhooks,
)
from tests.fakes.provenance import FakeMarker
from tests.fakes.screens import FakeScreen

FAKES: dict[type, type] = {
    Deferrer: FakeDeferrer,
    ImageStore: FakeImageStore,
    Upstream: FakeUpstream,
    Leases: FakeLeases,
    UsageLedger: FakeLedger,
    TenantDirectory: FakeTenants,
    JobStore: FakeJobStore,
    JobQueue: FakeJobQueue,
    Idempotency: FakeIdempotency,
    Webhooks: FakeWebhooks,
    Marker: FakeMarker,
    PromptScreen: FakeScreen,
}


def test_each_fake_is_typed_as_its_port():
    clock: Clock = FakeClock()
    deferrer: Deferrer = FakeDeferrer()
    store: ImageStore = FakeImageStore()
    upstream: Upstream = FakeUpstream()
    leases: Leases = FakeLeases(clock)
    ledger: UsageLedger = FakeLedger()
    tenants: TenantDirectory = FakeTenants()
    jobs: JobStore = FakeJobStore(clock)
    queue: JobQueue = FakeJobQueue()
    idempotency: Idempotency = FakeIdempotency()
    webhooks: Webhooks = FakeWebhooks()
    marker: Marker = FakeMarker()
    screen: PromptScreen = FakeScreen(clock)
    assert isinstance(clock(), float)
    assert all((deferrer, store, upstream, leases, ledger, tenants, jobs, queue, idempotency, webhooks, marker, screen))


def test_every_port_has_a_fake():
    declared = {getattr(ports, name) for name in ports.__all__} - {Clock}
    assert declared == set(FAKES)


def members(port: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(value)
        for name, value in vars(port).items()
        if inspect.isfunction(value) and not name.startswith("_")
    }


@pytest.mark.parametrize("port", list(FAKES), ids=lambda port: port.__name__)
def test_each_fake_has_its_ports_methods_with_the_same_signatures(port):
    fake = FAKES[port]
    for name, expected in members(port).items():
        assert hasattr(fake, name), f"{fake.__name__} lacks {name}"
        actual = inspect.signature(getattr(fake, name))
        assert list(actual.parameters.values()) == list(expected.parameters.values()), f"{fake.__name__}.{name}"
        assert actual.return_annotation == expected.return_annotation, f"{fake.__name__}.{name} returns"
