"""Screening under a tenant's policy (on the fakes): a refused prompt names its field, never what matched; a screen
that cannot answer refuses (fail-closed, the default) or lets the request through, counted (fail-open); the screen's
time comes out of the request's deadline; a policy that is off screens nothing."""

from __future__ import annotations

import pytest

from segmind_proxy.domain.catalog import bundled_catalog
from segmind_proxy.domain.errors import Dependency, PromptRefused, Unavailable
from segmind_proxy.domain.request import default_model, validated
from segmind_proxy.domain.screening import OnScreenFailure, ScreeningPolicy, ScreenMode
from segmind_proxy.flows.screening import Screening, texts_of
from tests.fakes.screens import FakeScreen
from tests.support.aws import make_tenant

GUARDRAIL = ScreeningPolicy(ScreenMode.GUARDRAIL, guardrail_id="g-1", guardrail_version="1")
CLEAN = validated(default_model(), {"prompt": "a red fox", "negative_prompt": "blurry"})
DIRTY_NEGATIVE = validated(default_model(), {"prompt": "a red fox", "negative_prompt": "forbidden things"})


@pytest.fixture
def screen(clock):
    return FakeScreen(clock)


@pytest.fixture
def screening(screen, clock, ledger, deferrer):
    return Screening({ScreenMode.GUARDRAIL: screen, ScreenMode.TERMS: screen}, 2.0, ledger, deferrer, clock=clock)


def tenant_with(tenants, policy, name="acme"):
    return make_tenant(tenants, name, f"key-{name}", screening=policy)


def test_a_clean_prompt_passes_and_both_texts_are_screened(screening, screen, tenants, clock):
    screening.check(CLEAN, tenant_with(tenants, GUARDRAIL), clock() + 20)
    assert screen.calls == [({"prompt": "a red fox", "negative_prompt": "blurry"}, 2.0)]


def test_a_refusal_names_the_models_field_never_what_matched(screening, tenants, clock):
    with pytest.raises(PromptRefused) as refused:
        screening.check(DIRTY_NEGATIVE, tenant_with(tenants, GUARDRAIL), clock() + 20)
    assert refused.value.field == "negative_prompt" and "forbidden" not in refused.value.message
    assert "content policy" in refused.value.message and "nothing was generated or charged" in refused.value.message


def test_a_model_without_a_negative_prompt_screens_its_prompt_only():
    flux = bundled_catalog().find("flux-schnell")
    assert texts_of(validated(flux, {"prompt": "a red fox"})) == {"prompt": "a red fox"}


def test_a_policy_that_is_off_screens_nothing(screening, screen, tenants, clock):
    screening.check(DIRTY_NEGATIVE, tenant_with(tenants, ScreeningPolicy(ScreenMode.OFF)), clock() + 20)
    assert screen.calls == []


def test_fail_closed_by_default_a_screen_down_refuses_with_a_503_naming_it(screening, screen, tenants, clock, ledger):
    screen.down = True
    acme = tenant_with(tenants, GUARDRAIL)
    with pytest.raises(Unavailable) as refused:
        screening.check(CLEAN, acme, clock() + 20)
    assert refused.value.dependency is Dependency.SCREEN and "Fake Guardrail" in refused.value.message
    assert ledger.usage(acme.tenant_id).unscreened_requests == 0


def test_fail_open_lets_the_request_through_and_counts_it(screening, screen, tenants, clock, ledger, deferrer):
    screen.down = True
    acme = tenant_with(tenants, ScreeningPolicy(**{**GUARDRAIL.__dict__, "on_failure": OnScreenFailure.OPEN}))
    screening.check(DIRTY_NEGATIVE, acme, clock() + 20)  # unscreened: served
    deferrer.run()
    assert ledger.usage(acme.tenant_id).unscreened_requests == 1


def test_the_screens_time_comes_out_of_the_requests_deadline(screening, screen, tenants, clock):
    acme = tenant_with(tenants, GUARDRAIL)
    screening.check(CLEAN, acme, clock() + 0.5)
    assert screen.calls[-1][1] == 0.5  # less than its own timeout was left
    screen.takes = 1.0
    started = clock()
    with pytest.raises(Unavailable):
        screening.check(CLEAN, acme, clock() + 0.5)
    assert clock() - started <= 0.5


def test_no_time_left_is_a_screen_that_cannot_answer(screening, screen, tenants, clock):
    with pytest.raises(Unavailable):
        screening.check(CLEAN, tenant_with(tenants, GUARDRAIL), clock() - 1)
    assert screen.calls == []


def test_without_tenancy_the_stacks_default_policy_applies(screen, clock):
    screening = Screening({ScreenMode.TERMS: screen}, 2.0, clock=clock)
    with pytest.raises(PromptRefused):
        screening.check(DIRTY_NEGATIVE, None, clock() + 20)
