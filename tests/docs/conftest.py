"""The local stack the documentation's examples run against: one for the module, with the demo key the docs show."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from local.harness import RunningStack, start_stack, stop_stack

DEMO_KEY = "segmind-proxy-local-dev-key"  # `make dev`'s demo tenant, written literally in every example


@pytest.fixture(scope="module")
def docs_stack() -> Iterator[RunningStack]:
    running = start_stack(extra_env={"DEV_API_KEY": DEMO_KEY})
    yield running
    stop_stack(running.process)
