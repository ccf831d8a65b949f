"""SnapStart in the template: one parameter turns it on for the API and worker functions, which API Gateway and SQS
invoke through their `live` alias, and turning it on or off publishes new versions."""

import json

import pytest
from cfnlint.api import ManualArgs, lint
from samtranslator.translator.transform import transform

from local.template import load_template

FUNCTIONS = ("ApiFunction", "WorkerFunction")


class NoManagedPolicies:
    def load(self):
        return {}


def translated(snapstart: str) -> dict:
    template = load_template()
    for resource in template["Resources"].values():  # as after `sam package`
        for uri in ("CodeUri", "ContentUri"):
            if uri in resource.get("Properties", {}):
                resource["Properties"][uri] = "s3://artifacts/package.zip"
    return transform(template, {"SnapStart": snapstart}, NoManagedPolicies())["Resources"]


def test_the_parameter_defaults_to_off_and_drives_the_condition():
    template = load_template()
    assert template["Parameters"]["SnapStart"]["Default"] == "None"
    assert template["Parameters"]["SnapStart"]["AllowedValues"] == ["None", "PublishedVersions"]
    assert template["Conditions"]["SnapStartOn"] == {"Fn::Equals": [{"Ref": "SnapStart"}, "PublishedVersions"]}
    for name in FUNCTIONS:
        properties = template["Resources"][name]["Properties"]
        assert properties["SnapStart"] == {"ApplyOn": {"Fn::If": ["SnapStartOn", "PublishedVersions", "None"]}}
        assert properties["AutoPublishAlias"] == "live"


def test_only_the_api_and_the_worker_can_use_it():
    resources = load_template()["Resources"]
    with_it = {name for name, r in resources.items() if "SnapStart" in r.get("Properties", {})}
    assert with_it == set(FUNCTIONS)


@pytest.mark.parametrize("snapstart", ["None", "PublishedVersions"])
def test_api_gateway_and_sqs_invoke_the_alias(snapstart):
    resources = translated(snapstart)
    aliases = {
        r["Properties"]["FunctionName"]["Ref"]: name
        for name, r in resources.items()
        if r["Type"] == "AWS::Lambda::Alias"
    }
    assert set(aliases) == set(FUNCTIONS)
    for name, resource in resources.items():
        if resource["Type"] == "AWS::Lambda::EventSourceMapping":
            assert resource["Properties"]["FunctionName"] == {"Ref": aliases["WorkerFunction"]}, name
    permissions = [r for r in resources.values() if r["Type"] == "AWS::Lambda::Permission"]
    api_permissions = [p for p in permissions if p["Properties"]["Principal"] == "apigateway.amazonaws.com"]
    api_permissions = [p for p in api_permissions if "ApiFunction" in json.dumps(p["Properties"]["FunctionName"])]
    assert api_permissions and all(
        p["Properties"]["FunctionName"] == {"Ref": aliases["ApiFunction"]} for p in api_permissions
    )
    integrations = json.dumps(resources["GatewayApi"]["Properties"]["Body"])
    assert f"${{{aliases['ApiFunction']}}}" in integrations or aliases["ApiFunction"] in integrations


def test_turning_it_on_or_off_publishes_new_versions():
    def versions(snapstart):
        resources = translated(snapstart)
        return {name for name, r in resources.items() if r["Type"] == "AWS::Lambda::Version"}

    off, on = versions("None"), versions("PublishedVersions")
    assert len(off) == len(on) == len(FUNCTIONS)
    assert not off & on


@pytest.mark.parametrize("snapstart", ["None", "PublishedVersions"])
def test_the_template_lints_clean_with_snapstart_on_and_off(snapstart):
    """cfn-lint, as `make validate` runs it, on the template deployed with each value (a value outside the allowed
    ones is refused, so the check sees the value)."""
    template = load_template()
    template["Parameters"]["SnapStart"]["Default"] = snapstart
    assert [str(match) for match in lint(json.dumps(template), config=ManualArgs(regions=["us-east-1"]))] == []
    template["Parameters"]["SnapStart"]["Default"] = "Always"
    assert any("E2015" in str(m) for m in lint(json.dumps(template), config=ManualArgs(regions=["us-east-1"])))
