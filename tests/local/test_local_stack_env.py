"""The environment the local stack gives its functions: ALLOW_PRIVATE_WEBHOOKS as the developer set it."""

from __future__ import annotations

import pytest

from local.stack import LocalConfig, LocalStack
from segmind_proxy.settings import Settings, WebhookTargets


def function_environment(monkeypatch: pytest.MonkeyPatch, tmp_path, env: dict[str, str]) -> dict[str, str]:
    monkeypatch.setenv("LOCAL_STACK_RUN_DIR", str(tmp_path))  # no temp dir of the stack's own to clean up
    return LocalStack(LocalConfig.from_env(env)).function_environment()


@pytest.mark.parametrize(
    ("env", "targets"),
    [
        ({}, WebhookTargets.LOOPBACK),
        ({"ALLOW_PRIVATE_WEBHOOKS": "loopback"}, WebhookTargets.LOOPBACK),
        ({"ALLOW_PRIVATE_WEBHOOKS": "false"}, WebhookTargets.PUBLIC),  # the production rule, tried locally
        ({"ALLOW_PRIVATE_WEBHOOKS": "FALSE"}, WebhookTargets.PUBLIC),
    ],
)
def test_functions_get_the_webhook_rule_of_the_environment_else_loopback(monkeypatch, tmp_path, env, targets):
    environment = function_environment(monkeypatch, tmp_path, env)
    assert Settings.model_validate(environment).webhook_targets is targets


@pytest.mark.parametrize("value", ["true", "yes", ""])
def test_the_stack_refuses_to_start_with_another_webhook_rule(value):
    with pytest.raises(SystemExit, match=r"ALLOW_PRIVATE_WEBHOOKS is .* it must be 'false' .* or 'loopback'"):
        LocalConfig.from_env({"ALLOW_PRIVATE_WEBHOOKS": value})
