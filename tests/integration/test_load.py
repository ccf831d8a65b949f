"""A bounded load test in `make test` (200 requests; the full 2,000-request run is `make load`)."""

import pytest

from bench.load import LOAD_OVERRIDES, check, run_load
from local.harness import start_stack, stop_stack

pytestmark = pytest.mark.integration


def test_mixed_load_has_no_unexpected_answers_and_loses_no_image():
    stack = start_stack({"PARAMETER_OVERRIDES": LOAD_OVERRIDES, "LOCAL_LAMBDA_CONCURRENCY": "6"})
    try:
        result = run_load(stack, total=200, concurrency=20)
    finally:
        stop_stack(stack.process)
    assert check(result) == []
    assert result.outcomes[("hit", 200)] > 60 and result.outcomes[("invalid", 400)] > 10
