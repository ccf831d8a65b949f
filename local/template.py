"""Reads template.yaml (SAM) so the local stack serves the same routes, names and environment as a deployment."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"


# libyaml's loader when PyYAML has it (its wheels do): the pure-Python one takes ~0.5 s for this template.
class _CfnLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """YAML loader that turns CloudFormation short-form tags (!Ref, !Sub, ...) into their long forms."""


def _construct_tag(loader: _CfnLoader, tag_suffix: str, node: yaml.Node) -> Any:
    name = "Ref" if tag_suffix == "Ref" else f"Fn::{tag_suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if tag_suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_CfnLoader.add_multi_constructor("!", _construct_tag)


@lru_cache(maxsize=4)
def _parsed(path: Path, mtime_ns: int) -> dict[str, Any]:
    return yaml.load(path.read_text(), Loader=_CfnLoader)


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    """The template as plain data; a fresh copy each call, parsed again only when the file changed."""
    return copy.deepcopy(_parsed(path, path.stat().st_mtime_ns))


@dataclass
class Route:
    method: str
    path: str
    function: str
    api_key_required: bool
    authorizer: str | None = None  # the name of one of the API's Lambda authorizers
    pattern: re.Pattern[str] = field(init=False)

    def __post_init__(self) -> None:
        regex = re.sub(r"\\\{(\w+)\\\+\\\}", r"(?P<\1>.+)", re.escape(self.path))
        regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", regex)
        self.pattern = re.compile(f"^{regex}$")

    def match(self, method: str, path: str) -> dict[str, str] | None:
        if method != self.method and self.method != "ANY":
            return None
        found = self.pattern.match(path)
        return found.groupdict() if found else None

    def serves_path(self, path: str) -> bool:
        """Whether `path` is this route's resource, whatever the method."""
        return self.pattern.match(path) is not None


@dataclass
class AuthorizerSpec:
    """A Lambda authorizer of the API (SAM's `Auth.Authorizers`), as API Gateway runs it."""

    name: str
    function: str  # logical id of its function
    payload_type: str  # TOKEN or REQUEST
    headers: list[str]  # identity sources (a TOKEN authorizer has exactly one)
    validation: str | None  # a TOKEN authorizer's ValidationExpression
    ttl_seconds: int  # ReauthorizeEvery: how long an answer is cached for the identity's value; 0 never


@dataclass
class FunctionSpec:
    logical_id: str
    code_dir: Path
    handler: str
    timeout: int
    memory: int
    environment: dict[str, str]


class Stack:
    """The template with its parameters and physical resource names resolved for one local stack."""

    def __init__(self, name: str, template: dict[str, Any] | None = None, region: str = "us-east-1") -> None:
        self.name = name
        self.region = region
        self.account = "123456789012"
        self.template = template or load_template()
        self.resources: dict[str, dict[str, Any]] = self.template["Resources"]
        self.parameters = {k: v.get("Default") for k, v in self.template.get("Parameters", {}).items()}
        # Physical names, filled in by the bootstrap as it creates resources.
        self.physical: dict[str, str] = {}
        self.arns: dict[str, str] = {}
        self.local_api_url: str | None = None  # replaces the execute-api URL in outputs

    def resources_of(self, kind: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.resources.items() if v["Type"] == kind}

    def default_name(self, logical_id: str) -> str:
        """CloudFormation-like generated name: stack name plus logical id (lower case, as S3 needs)."""
        return f"{self.name}-{logical_id}".lower()

    # -- intrinsic functions -------------------------------------------------
    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) != 1:
            return {k: self.resolve(v) for k, v in value.items()}
        ((name, arg),) = value.items()
        if name == "Ref":
            return self._ref(arg)
        if name == "Fn::GetAtt":
            logical, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
            return self._get_att(logical, attribute)
        if name == "Fn::Sub" and self.local_api_url and ".execute-api." in str(arg):
            return self.local_api_url
        if name == "Fn::Sub":
            text, extra = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1]))
            return re.sub(r"\$\{([^}]+)\}", lambda m: str(extra.get(m[1]) or self._sub_var(m[1])), text)
        if name == "Fn::Join":
            separator, items = arg
            resolved = self.resolve(items)
            return separator.join(str(i) for i in (resolved if isinstance(resolved, list) else [resolved]))
        return {k: self.resolve(v) for k, v in value.items()}

    def _sub_var(self, name: str) -> Any:
        if "." in name:
            logical, attribute = name.split(".", 1)
            return self._get_att(logical, attribute)
        return self._ref(name)

    def _ref(self, name: str) -> Any:
        pseudo = {
            "AWS::StackName": self.name,
            "AWS::Region": self.region,
            "AWS::AccountId": self.account,
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::Partition": "aws",
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.parameters:
            default = self.parameters[name]
            kind = self.template["Parameters"][name].get("Type")
            if kind == "CommaDelimitedList" and isinstance(default, str):
                return [item.strip() for item in default.split(",")]
            return default
        if name in self.physical:
            return self.physical[name]
        return self.default_name(name)

    def _get_att(self, logical: str, attribute: str) -> Any:
        if attribute == "Arn":
            if logical in self.arns:
                return self.arns[logical]
            if self.resources.get(logical, {}).get("Type") == "AWS::S3::Bucket":
                return f"arn:aws:s3:::{self._ref(logical)}"
            return f"arn:aws:local:{self.region}:{self.account}:{logical}"
        return f"{logical}.{attribute}"

    # -- functions and routes ------------------------------------------------
    def function(self, logical_id: str) -> FunctionSpec:
        props = self.resources[logical_id]["Properties"]
        defaults = self.template.get("Globals", {}).get("Function", {})
        env = {
            **defaults.get("Environment", {}).get("Variables", {}),
            **props.get("Environment", {}).get("Variables", {}),
        }
        return FunctionSpec(
            logical_id=logical_id,
            code_dir=ROOT / props["CodeUri"],
            handler=props["Handler"],
            timeout=int(self.resolve(props.get("Timeout", defaults.get("Timeout", 3)))),
            memory=int(self.resolve(props.get("MemorySize", defaults.get("MemorySize", 128)))),
            environment={k: str(self.resolve(v)) for k, v in env.items()},
        )

    def api(self, logical_id: str = "GatewayApi") -> dict[str, Any]:
        return self.resources[logical_id]["Properties"]

    def api_key_source(self, api_id: str = "GatewayApi") -> str:
        """HEADER (the x-api-key header) or AUTHORIZER (the `usageIdentifierKey` of the route's authorizer)."""
        return str(self.api(api_id).get("ApiKeySourceType", "HEADER")).upper()

    def authorizers(self, api_id: str = "GatewayApi") -> dict[str, AuthorizerSpec]:
        """The API's Lambda authorizers, their cache TTLs resolved (API Gateway's default is 300 s)."""
        found = {}
        for name, spec in self.api(api_id).get("Auth", {}).get("Authorizers", {}).items():
            if "FunctionArn" not in spec:
                continue  # a Cognito authorizer: not emulated
            identity = spec.get("Identity", {})
            payload = spec.get("FunctionPayloadType", "TOKEN").upper()
            headers = [identity.get("Header", "Authorization")] if payload == "TOKEN" else identity.get("Headers", [])
            found[name] = AuthorizerSpec(
                name=name,
                function=spec["FunctionArn"]["Fn::GetAtt"][0],
                payload_type=payload,
                headers=list(headers),
                validation=identity.get("ValidationExpression") if payload == "TOKEN" else None,
                ttl_seconds=int(self.resolve(identity.get("ReauthorizeEvery", 300))),
            )
        return found

    def routes(self, api_id: str = "GatewayApi") -> list[Route]:
        auth = self.api(api_id).get("Auth", {})
        default_key = bool(auth.get("ApiKeyRequired", False))
        routes = []
        for logical_id, resource in self.resources_of("AWS::Serverless::Function").items():
            for event in resource["Properties"].get("Events", {}).values():
                if event["Type"] != "Api":
                    continue
                props = event["Properties"]
                required = props.get("Auth", {}).get("ApiKeyRequired", default_key)
                authorizer = props.get("Auth", {}).get("Authorizer", auth.get("DefaultAuthorizer"))
                authorizer = None if authorizer in (None, "NONE") else authorizer
                routes.append(Route(props["Method"].upper(), props["Path"], logical_id, bool(required), authorizer))
        # As API Gateway prefers the most specific resource: literal paths, then those with path parameters, then
        # greedy ones ({proxy+}); longer before shorter within each.
        return sorted(routes, key=lambda r: ("+}" in r.path, "{" in r.path, -len(r.path)))

    def sqs_sources(self) -> list[tuple[str, str, int]]:
        """(function, queue logical id, batch size) for every SQS event source in the template."""
        sources = []
        for logical_id, resource in self.resources_of("AWS::Serverless::Function").items():
            for event in resource["Properties"].get("Events", {}).values():
                if event["Type"] == "SQS":
                    queue = event["Properties"]["Queue"]["Fn::GetAtt"][0]
                    sources.append((logical_id, queue, int(event["Properties"].get("BatchSize", 10))))
        return sources

    def schedule_sources(self) -> list[tuple[str, str]]:
        """(function, schedule expression) for every Schedule event source in the template, parameters resolved."""
        sources = []
        for logical_id, resource in self.resources_of("AWS::Serverless::Function").items():
            for event in resource["Properties"].get("Events", {}).values():
                if event["Type"] == "Schedule":
                    sources.append((logical_id, str(self.resolve(event["Properties"]["Schedule"]))))
        return sources

    def binary_media_types(self, api_id: str = "GatewayApi") -> list[str]:
        return [t.replace("~1", "/") for t in self.api(api_id).get("BinaryMediaTypes", [])]
