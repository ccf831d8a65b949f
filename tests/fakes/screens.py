"""A fake of the `PromptScreen` port standing in for Bedrock Guardrails in the flow tests: refuses texts holding one of
its words, and can be made unreachable or slow (taking the clock past the time it was allowed)."""

from __future__ import annotations

from collections.abc import Mapping

from segmind_proxy.domain.errors import Dependency
from segmind_proxy.domain.screening import ALLOWED, ScreeningPolicy, Verdict
from tests.fakes.clock import FakeClock
from tests.fakes.errors import outage


class FakeScreen:
    name = "Fake Guardrail"

    def __init__(self, clock: FakeClock, blocked: tuple[str, ...] = ("forbidden",)) -> None:
        self.clock = clock
        self.blocked = blocked
        self.calls: list[tuple[dict[str, str], float]] = []
        self.down = False
        self.takes = 0.0  # seconds each call takes

    def screen(self, texts: Mapping[str, str], policy: ScreeningPolicy, *, timeout: float) -> Verdict:
        self.calls.append((dict(texts), timeout))
        if self.down or self.takes > timeout:
            self.clock.sleep(min(self.takes, timeout))
            raise outage(Dependency.SCREEN)
        self.clock.sleep(self.takes)
        for field, text in texts.items():
            if any(word in text.lower() for word in self.blocked):
                return Verdict(False, field, ("contentPolicy:FAKE",))
        return ALLOWED
