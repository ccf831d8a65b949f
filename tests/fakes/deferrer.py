"""Work deferred until after the answer, held until the test says the answer has gone."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class FakeDeferrer:
    """A `Deferrer` standing in for the after-response extension: `defer` holds the task; `run` runs what is held,
    including work deferred by it, as the extension would once the answer has gone. A task's error is raised (the
    real deferrers log it), so a test sees it."""

    def __init__(self) -> None:
        self.tasks: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []

    def defer(self, task: Callable[..., Any], *args: Any) -> None:
        self.tasks.append((task, args))

    def run(self) -> None:
        while self.tasks:
            task, args = self.tasks.pop(0)
            task(*args)
