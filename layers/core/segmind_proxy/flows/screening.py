"""Screening a request's prompts under its tenant's policy, before anything costs: the cache is not consulted, no
lease is taken, no credit reserved and nothing is called upstream for a refused prompt. A screen that cannot answer
in time (Bedrock down or slow) refuses the request with a 503 naming it (fail-closed, the default) or lets it through
unscreened, logged and counted (fail-open), as the tenant's policy says."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from segmind_proxy.domain.catalog import Role
from segmind_proxy.domain.errors import Dependency, Outage, PromptRefused, Unavailable
from segmind_proxy.domain.ports import Deferrer, PromptScreen, UsageLedger
from segmind_proxy.domain.request import Txt2ImgRequest
from segmind_proxy.domain.screening import OnScreenFailure, ScreeningPolicy, ScreenMode, Verdict
from segmind_proxy.domain.tenants import Tenant
from segmind_proxy.domain.usage import Counted
from segmind_proxy.flows.billing import count
from segmind_proxy.observability import MetricUnit, logger, metrics

SCREENED_ROLES = (Role.PROMPT, Role.NEGATIVE_PROMPT)


@dataclass
class Screening:
    """The screens by mode, and how long one may take at most (the request's own deadline may leave less)."""

    screens: Mapping[ScreenMode, PromptScreen]
    timeout: float
    ledger: UsageLedger | None = None  # where a fail-open pass is counted
    later: Deferrer | None = None
    default: ScreeningPolicy = field(default_factory=ScreeningPolicy)  # where tenancy is off
    clock: Callable[[], float] = time.monotonic  # the clock deadlines are on

    def check(self, request: Txt2ImgRequest, tenant: Tenant | None, deadline: float) -> None:
        """Return where the request may be served; raise PromptRefused, or Unavailable where the screen cannot say
        and the policy fails closed."""
        policy = tenant.screening if tenant is not None else self.default
        texts = texts_of(request)
        if policy.mode is ScreenMode.OFF or not texts:
            return
        screen = self.screens[policy.mode]
        started = self.clock()
        try:
            verdict = self._verdict(screen, texts, policy, deadline)
        except Outage:
            self._unanswered(screen, policy, tenant)
            return
        finally:
            metrics.add_metric(name="ScreenLatency", unit=MetricUnit.Milliseconds, value=(self.clock() - started) * 1e3)
        if not verdict.allowed:
            raise self._refusal(request, verdict, policy, tenant)

    def _verdict(
        self, screen: PromptScreen, texts: Mapping[str, str], policy: ScreeningPolicy, deadline: float
    ) -> Verdict:
        # The screen's time comes out of the request's: it may take what is left before the deadline, no more.
        allowed = min(self.timeout, deadline - self.clock())
        if allowed <= 0:
            raise Outage(Dependency.SCREEN)
        return screen.screen(texts, policy, timeout=allowed)

    def _unanswered(self, screen: PromptScreen, policy: ScreeningPolicy, tenant: Tenant | None) -> None:
        metrics.add_metric(name="ScreenFailures", unit=MetricUnit.Count, value=1)
        if policy.on_failure is OnScreenFailure.OPEN:
            logger.warning(
                "Screen unavailable: serving unscreened, as the tenant's policy fails open",
                extra={"screen": screen.name, "tenant_id": tenant.tenant_id if tenant else None},
                exc_info=True,
            )
            metrics.add_metric(name="UnscreenedRequests", unit=MetricUnit.Count, value=1)
            count(tenant, self.ledger, Counted.UNSCREENED, self.later)
            return
        logger.warning("Screen unavailable: refusing, as the policy fails closed", extra={"screen": screen.name})
        raise Unavailable(
            Dependency.SCREEN,
            f"The content screen ({screen.name}) could not answer (unreachable, failing or too slow), and this tenant's "
            "policy refuses unscreened prompts; nothing was charged. Try again shortly.",
        )

    @staticmethod
    def _refusal(
        request: Txt2ImgRequest, verdict: Verdict, policy: ScreeningPolicy, tenant: Tenant | None
    ) -> PromptRefused:
        role = Role(verdict.field) if verdict.field in {r.value for r in SCREENED_ROLES} else Role.PROMPT
        name = request.model.field_of(role) or role.value
        metrics.add_metric(name="PromptsRefused", unit=MetricUnit.Count, value=1)
        # What matched is never logged nor answered; the prompt only where the tenant's policy asks for it.
        logged: dict[str, object] = {
            "tenant_id": tenant.tenant_id if tenant else None,
            "field": name,
            "reasons": list(verdict.reasons),
            "prompt_sha256": hashlib.sha256(request.prompt.encode()).hexdigest(),
            "model": request.slug,
        }
        if policy.record_prompt:
            logged["prompt"] = request.prompt
        logger.info("Prompt refused by the content policy", extra=logged)
        return PromptRefused(
            f"The {name} was refused by this gateway's content policy; nothing was generated or charged.",
            field=name,
            reasons=verdict.reasons,
        )


def texts_of(request: Txt2ImgRequest) -> dict[str, str]:
    """The texts a screen reads, by role: the prompt and the negative prompt (where the model has one and it is set)."""
    texts = {role.value: request.role(role) for role in SCREENED_ROLES}
    return {role: str(text) for role, text in texts.items() if text}
