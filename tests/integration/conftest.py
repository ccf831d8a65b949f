"""Integration fixtures: the local stack over HTTP (see local/harness.py), and a record of every answer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Browser, sync_playwright

from local.harness import DEV_KEY, SLUG, RunningStack, start_stack, stop_stack

__all__ = ["DEV_KEY", "SLUG", "RunningStack", "start_stack", "stop_stack"]

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Chromium: Debian's package (browsers cannot be downloaded here), which `make test` installs."""
    assert Path(CHROMIUM).exists(), "Debian's chromium package: `make test` installs it (see the Makefile)"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM)
        yield launched
        launched.close()


@pytest.fixture(scope="session")
def stack() -> Iterator[RunningStack]:
    running = start_stack()
    yield running
    stop_stack(running.process)


@pytest.fixture
def fake_calls(stack: RunningStack):
    """Number of upstream calls the fake Segmind has seen so far, read afresh on each call."""
    return lambda: stack.fake_stats()["calls"]


_SEEN: list[bytes] = []


@pytest.fixture(autouse=True)
def _record_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keeps every HTTP answer the suite receives (headers and body), for the security scan."""
    original = requests.Session.send

    def send(self: requests.Session, request: requests.PreparedRequest, **kwargs: object) -> requests.Response:
        response = original(self, request, **kwargs)
        if "/_fake/" not in request.url:  # the fake's own test controls are not the gateway's answers
            _SEEN.append(str(dict(response.headers)).encode() + response.content)
        return response

    monkeypatch.setattr(requests.Session, "send", send)


@pytest.fixture
def seen_answers() -> list[bytes]:
    return _SEEN


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked `after_the_others` inspect what the rest of the run did (the security scan reads every answer
    it saw): they run last, whatever their file is named and in whatever order files are given."""
    last = [item for item in items if item.get_closest_marker("after_the_others")]
    items[:] = [item for item in items if item not in last] + last
