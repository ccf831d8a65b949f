"""Fixtures of the handler tests: the work a handler leaves for after its answer, held until the test runs it."""

from __future__ import annotations

import pytest

from tests.fakes import FakeDeferrer


@pytest.fixture
def later(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> FakeDeferrer:
    """The handler's work after the answer, held until `run`. List it after the fixtures that set the environment
    (`tenancy`, `jobs_env`): they rebuild the generation service it patches."""
    from segmind_proxy.composition import generation_service

    held = FakeDeferrer()
    monkeypatch.setattr(generation_service(), "later", held)
    return held
