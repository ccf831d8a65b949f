"""Fixtures of the handler tests: the work a handler leaves for after its answer, held until the test runs it."""

from __future__ import annotations

import pytest

from tests.fakes import FakeDeferrer


@pytest.fixture
def later(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> FakeDeferrer:
    """The handler's work after the answer, held until `run`: what the composition root builds defers to it."""
    from segmind_proxy import composition

    held = FakeDeferrer()
    monkeypatch.setattr(composition, "deferrer", lambda: held)
    composition.generation_service.cache_clear()
    composition.services.cache_clear()
    return held
