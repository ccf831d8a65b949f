"""The flows on the in-memory fakes of their ports (tests/fakes): no moto, no HTTP."""

from __future__ import annotations

import pytest

from tests.fakes import (
    FakeClock,
    FakeDeferrer,
    FakeImageStore,
    FakeJobStore,
    FakeLeases,
    FakeLedger,
    FakeTenants,
    FakeUpstream,
)


@pytest.fixture
def clock() -> FakeClock:
    """The time every fake and the service read here; waiting on it takes no time."""
    return FakeClock()


@pytest.fixture
def store() -> FakeImageStore:
    return FakeImageStore()


@pytest.fixture
def segmind() -> FakeUpstream:
    return FakeUpstream()


@pytest.fixture
def leases(clock: FakeClock) -> FakeLeases:
    return FakeLeases(clock)


@pytest.fixture
def ledger() -> FakeLedger:
    return FakeLedger()


@pytest.fixture
def tenants(ledger: FakeLedger) -> FakeTenants:
    return FakeTenants(ledger=ledger)


@pytest.fixture
def jobs() -> FakeJobStore:
    return FakeJobStore()


@pytest.fixture
def deferrer() -> FakeDeferrer:
    return FakeDeferrer()
