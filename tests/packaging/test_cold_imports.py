"""What a cold start's first request does not pay for: importing the API handler leaves out what only some routes
use (docs/performance.md, "Why the cold-start target is not met"), and those routes build it on their first use."""

import json
import os
import subprocess
import sys

from local.template import ROOT

# Imported by the first request that needs them, never by the handler's import: `requests` (the Segmind client,
# webhooks), Powertools' idempotency, parameters (the Segmind key) and OpenAPI models (`/docs`).
DEFERRED = (
    "requests",
    "standardwebhooks",
    "segmind_proxy.adapters.segmind",
    "segmind_proxy.adapters.webhooks",
    "segmind_proxy.adapters.idempotency",
    "segmind_proxy.adapters.upstream_key",
    "aws_lambda_powertools.utilities.idempotency",
    "aws_lambda_powertools.utilities.parameters",
    "aws_lambda_powertools.event_handler.openapi.models",
)

PROBE = """
import json, sys
sys.path[:0] = ["functions/api", "layers/core"]
import app
from segmind_proxy.api import schemas

imported = sorted(name for name in json.loads(sys.argv[1]) if name in sys.modules)
wired = app.services()  # what the first request builds
built = [model.__name__ for model in schemas.every_schema() if model.__pydantic_complete__]
first_use = [name for name in json.loads(sys.argv[1]) if name in sys.modules]
upstream = wired.generation.upstream.base_url  # the first miss's first use of the Segmind client
print(json.dumps({"imported": imported, "built": built, "after_services": first_use, "upstream": upstream,
                  "requests": "requests" in sys.modules}))
"""


def probe() -> dict:
    env = {
        **os.environ,
        "AWS_LAMBDA_FUNCTION_NAME": "ApiFunction",
        "LAMBDA_TASK_ROOT": str(ROOT),
        "CACHE_BUCKET": "b",
        "TENANTS_TABLE": "tenants",
        "JOBS_TABLE": "jobs",
        "JOBS_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/1/jobs",
        "SEGMIND_API_KEY_SECRET": "s",
        "SEGMIND_BASE_URL": "https://segmind.example",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    env.pop("AWS_LAMBDA_RUNTIME_API", None)
    out = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(DEFERRED)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_handler_and_its_wiring_import_nothing_only_some_routes_use():
    seen = probe()
    assert seen["imported"] == []
    assert seen["after_services"] == []  # building the wiring (the first request) imports none either
    assert seen["built"] == []  # response and OpenAI request models are built by their first use
    assert seen["upstream"] == "https://segmind.example"  # built on first use, from the same settings
    assert seen["requests"]
