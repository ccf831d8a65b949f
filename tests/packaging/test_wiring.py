"""The deployed wiring, checked offline: the template translated by aws-sam-translator, every function's environment
naming real resources, no wildcard permissions, and every AWS call the code makes (recorded while it runs) allowed."""

import json
from collections import defaultdict

import botocore.client
import pytest
from samtranslator.translator.transform import transform

from local.template import load_template
from tests.support.aws import make_tenant
from tests.support.lambda_events import Context, api_event, body_json
from tests.support.segmind import SAMPLE

PSEUDO = {"AWS::Region", "AWS::AccountId", "AWS::StackName", "AWS::Partition", "AWS::URLSuffix"}
# IAM actions an API operation needs where the name differs.
ACTION_FOR = {"s3:HeadObject": "s3:GetObject", "s3:ListObjectsV2": "s3:ListBucket"}
# What the AWS managed policies SAM attaches grant (those the code's calls can need).
MANAGED = {
    "AWSLambdaSQSQueueExecutionRole": {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"},
    "AWSLambdaBasicExecutionRole": {"logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"},
    "AWSXrayWriteOnlyAccess": {"xray:PutTraceSegments", "xray:PutTelemetryRecords"},
}


class NoManagedPolicies:
    def load(self):
        return {}


@pytest.fixture(scope="module")
def translated():
    template = load_template()
    for resource in template["Resources"].values():  # as after `sam package`
        for uri in ("CodeUri", "ContentUri"):
            if uri in resource.get("Properties", {}):
                resource["Properties"][uri] = "s3://artifacts/package.zip"
    return transform(template, {}, NoManagedPolicies())


def functions(translated):
    resources = translated["Resources"]
    return {k: v for k, v in resources.items() if v["Type"] == "AWS::Lambda::Function"}


def references(value):
    """Every Ref / GetAtt target inside an intrinsic-function value."""
    if isinstance(value, dict):
        for name, arg in value.items():
            if name == "Ref":
                yield arg
            elif name == "Fn::GetAtt":
                yield arg[0] if isinstance(arg, list) else arg.split(".")[0]
            elif name == "Fn::Sub":
                text = arg if isinstance(arg, str) else arg[0]
                yield from (part.split("}")[0].split(".")[0] for part in text.split("${")[1:])
            else:
                yield from references(arg)
    elif isinstance(value, list):
        for item in value:
            yield from references(item)


def test_every_environment_variable_names_an_existing_resource_or_parameter(translated):
    known = set(translated["Resources"]) | set(translated.get("Parameters", {})) | PSEUDO
    for name, function in functions(translated).items():
        variables = function["Properties"].get("Environment", {}).get("Variables", {})
        missing = {ref for value in variables.values() for ref in references(value)} - known
        assert missing == set(), f"{name} names unknown {missing}"


def role_statements(translated, function):
    role = translated["Resources"][function["Properties"]["Role"]["Fn::GetAtt"][0]]
    for policy in role["Properties"].get("Policies", []):
        yield from policy["PolicyDocument"]["Statement"]


def test_no_wildcard_actions_or_resources_in_our_policies(translated):
    for name, function in functions(translated).items():
        for statement in role_statements(translated, function):
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            assert not any(a == "*" or a.endswith(":*") for a in actions), (name, statement)
            assert statement.get("Resource") != "*", (name, statement)


def allowed_actions(translated, logical_id):
    function = functions(translated)[logical_id]
    role = translated["Resources"][function["Properties"]["Role"]["Fn::GetAtt"][0]]
    allowed = set()
    for arn in role["Properties"].get("ManagedPolicyArns", []):
        allowed |= MANAGED.get(json.dumps(arn).rsplit("/", 1)[-1].strip('"}]'), set())
    for statement in role_statements(translated, function):
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        allowed |= set(actions)
    return allowed


@pytest.fixture
def recorded(monkeypatch):
    """The AWS calls made, per function, as IAM actions."""
    calls, current = defaultdict(set), {"function": None}
    original = botocore.client.BaseClient._make_api_call

    def record(self, operation, params):
        if current["function"]:
            service = self.meta.service_model.signing_name
            action = f"{service}:{operation}"
            calls[current["function"]].add(ACTION_FOR.get(action, action))
        return original(self, operation, params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", record)
    return calls, current


def test_every_call_the_code_makes_is_allowed(translated, recorded, invoke, upstream, jobs_env, worker, monkeypatch):
    calls, current = recorded
    make_tenant(jobs_env["registry"], budget_credits=5.0)
    upstream.succeed(times=4)
    slug = "stable-diffusion-3.5-turbo-txt2img"
    current["function"] = "ApiFunction"
    invoke(api_event(SAMPLE | {"width": 256, "height": 256}, api_key_id="key-acme"))  # miss: lease, ledger, S3
    invoke(api_event(SAMPLE | {"width": 256, "height": 256}, api_key_id="key-acme", headers={"x-response-mode": "url"}))
    invoke(api_event(SAMPLE | {"seed": 3}, api_key_id="key-acme", headers={"Idempotency-Key": "k1"}))
    job = body_json(invoke(api_event(SAMPLE | {"seed": 4}, path=f"/v2/{slug}", api_key_id="key-acme")))
    invoke(api_event(method="GET", path=f"/v2/requests/{job['request_id']}", api_key_id="key-acme"))
    invoke(api_event(method="GET", path="/v1/usage", api_key_id="key-acme"))
    current["function"] = "WorkerFunction"
    worker()
    current["function"] = "CreditsProbeFunction"
    import responses

    import functions.credits_probe.app as probe

    upstream.mock.add(
        responses.GET, "https://segmind.test/v1/get-user-credits", json={"credits": 9.5, "free-credits": 0}
    )
    assert probe.lambda_handler({}, Context())["credits"] == 9.5
    current["function"] = None

    assert {"s3:GetObject", "s3:PutObject", "dynamodb:UpdateItem", "sqs:SendMessage"} <= calls["ApiFunction"]
    for logical_id, actions in calls.items():
        missing = actions - allowed_actions(translated, logical_id)
        assert missing == set(), f"{logical_id} calls {sorted(missing)} without permission"


def test_the_credits_probe_maps_errors_like_the_api(invoke, upstream, jobs_env, capsys):
    import responses

    import functions.credits_probe.app as probe

    upstream.mock.add(responses.GET, "https://segmind.test/v1/get-user-credits", json={"error": "bad key"}, status=401)
    upstream.mock.add(responses.GET, "https://segmind.test/v1/get-user-credits", json={"error": "bad key"}, status=401)
    answer = probe.lambda_handler({}, Context())
    assert answer == {"ok": False, "status": 502, "error": answer["error"]} and "operator" in answer["error"]
    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert any(blob.get("ErrorKind") == "auth" for blob in emitted)
