"""Detailed tracing is the operator's choice: off, the X-Ray SDK (and its cold-start cost) never loads."""

import json
import os
import subprocess
import sys

import pytest

from local.template import ROOT

PROBE = """
import json, sys
sys.path[:0] = ["functions/api", "layers/core"]
import app
from segmind_proxy.observability import tracer
print(json.dumps({"xray_loaded": "aws_xray_sdk.core" in sys.modules, "tracer": type(tracer).__name__}))
"""


@pytest.mark.parametrize(("detailed", "loaded", "kind"), [("false", False, "Untraced"), ("true", True, "Tracer")])
def test_the_xray_sdk_loads_only_with_detailed_tracing(detailed, loaded, kind):
    env = {
        **os.environ,
        "AWS_LAMBDA_FUNCTION_NAME": "ApiFunction",
        "LAMBDA_TASK_ROOT": str(ROOT),
        "DETAILED_TRACING": detailed,
        "POWERTOOLS_TRACE_DISABLED": "false",
        "CACHE_BUCKET": "b",
        "SEGMIND_API_KEY_SECRET": "s",
    }
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"xray_loaded": loaded, "tracer": kind}
