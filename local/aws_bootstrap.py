"""Creates in moto (server mode) every AWS resource the template declares that the code uses, under the template's
names, plus a CloudFormation stack carrying the template's outputs, so tools find the local stack as a deployed one."""

from __future__ import annotations

import json
import warnings
from typing import Any

import boto3

from admin.chains import make_local_chain
from admin.service import StackRefs, TenantAdmin
from segmind_proxy.adapters.dynamo_tenants import TenantRegistry
from segmind_proxy.adapters.dynamo_usage import Meter

from .template import Stack

LOCAL_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
DEMO_TENANT = "demo"


def local_session(region: str) -> boto3.session.Session:
    return boto3.session.Session(region_name=region, **LOCAL_CREDENTIALS)


def bootstrap(stack: Stack, endpoint: str, *, segmind_key: str, dev_api_key: str) -> dict[str, Any]:
    """Create the resources, fill `stack.physical` with their ids, and register the demo tenant."""
    session = local_session(stack.region)
    s3 = session.client("s3", endpoint_url=endpoint)
    for logical_id in stack.resources_of("AWS::S3::Bucket"):
        name = stack.default_name(logical_id)
        s3.create_bucket(Bucket=name)
        stack.physical[logical_id] = name

    kms = session.client("kms", endpoint_url=endpoint)
    for logical_id, resource in stack.resources_of("AWS::KMS::Key").items():
        props = resource["Properties"]
        options = {k: props[k] for k in ("KeySpec", "KeyUsage") if k in props}
        key = kms.create_key(Description=props.get("Description", logical_id), **options)["KeyMetadata"]
        stack.physical[logical_id] = key["KeyId"]  # Ref of a key is its id
        stack.arns[logical_id] = key["Arn"]

    # What each secret holds locally: the chain of the provenance key is made here, for the key moto just made (a
    # self-made root: verifiers say "valid but untrusted", as they would of a deployed stack's self-signed chain).
    values = {"ProvenanceChainSecret": lambda: make_local_chain(kms, stack.physical["ProvenanceKey"]).decode()}
    secrets = session.client("secretsmanager", endpoint_url=endpoint)
    for logical_id, resource in stack.resources_of("AWS::SecretsManager::Secret").items():
        name = stack.resolve(resource["Properties"].get("Name")) or stack.default_name(logical_id)
        value = values[logical_id]() if logical_id in values else segmind_key
        arn = secrets.create_secret(Name=name, SecretString=value)["ARN"]
        stack.physical[logical_id] = arn  # Ref of a secret is its ARN
        stack.arns[logical_id] = arn

    dynamodb = session.client("dynamodb", endpoint_url=endpoint)
    for logical_id, resource in stack.resources_of("AWS::DynamoDB::Table").items():
        props = resource["Properties"]
        name = stack.default_name(logical_id)
        table = dynamodb.create_table(
            TableName=name,
            AttributeDefinitions=props["AttributeDefinitions"],
            KeySchema=props["KeySchema"],
            BillingMode=props.get("BillingMode", "PAY_PER_REQUEST"),
            **(
                {"GlobalSecondaryIndexes": props["GlobalSecondaryIndexes"]} if "GlobalSecondaryIndexes" in props else {}
            ),
        )
        stack.physical[logical_id] = name
        stack.arns[logical_id] = table["TableDescription"]["TableArn"]

    sqs = session.client("sqs", endpoint_url=endpoint)
    queues = stack.resources_of("AWS::SQS::Queue")
    # Dead-letter queues first: the others' redrive policies name them.
    for logical_id, resource in sorted(queues.items(), key=lambda item: "RedrivePolicy" in item[1]["Properties"]):
        props = stack.resolve(resource["Properties"])
        attributes = {k: str(props[k]) for k in ("VisibilityTimeout", "MessageRetentionPeriod") if k in props}
        if "RedrivePolicy" in props:
            attributes["RedrivePolicy"] = json.dumps(props["RedrivePolicy"])
        url = sqs.create_queue(QueueName=stack.default_name(logical_id), Attributes=attributes)["QueueUrl"]
        stack.physical[logical_id] = url  # Ref of a queue is its URL
        stack.arns[logical_id] = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]

    apigw = session.client("apigateway", endpoint_url=endpoint)
    stack.physical["GatewayApi"] = apigw.create_rest_api(name=stack.name)["id"]
    for logical_id, resource in stack.resources_of("AWS::ApiGateway::UsagePlan").items():
        props = stack.resolve(resource["Properties"])
        throttle, quota = props.get("Throttle", {}), props.get("Quota")
        plan = apigw.create_usage_plan(
            name=props.get("UsagePlanName", logical_id),
            description=props.get("Description", ""),
            throttle={"rateLimit": float(throttle["RateLimit"]), "burstLimit": int(throttle["BurstLimit"])},
            **({"quota": {"limit": int(quota["Limit"]), "period": quota["Period"]}} if quota else {}),
        )
        stack.physical[logical_id] = plan["id"]

    outputs = create_outputs_stack(stack, session.client("cloudformation", endpoint_url=endpoint))
    refs = StackRefs.from_outputs(stack.name, outputs)
    ddb = session.resource("dynamodb", endpoint_url=endpoint)
    admin = TenantAdmin(
        refs, apigw, TenantRegistry(refs.tenants_table, lambda: ddb), Meter(refs.tenants_table, lambda: ddb)
    )
    demo = admin.create(DEMO_TENANT, "enterprise", key_value=dev_api_key)
    return {"demo_tenant": demo.tenant, "outputs": outputs}


def create_outputs_stack(stack: Stack, cloudformation: Any) -> dict[str, str]:
    """A CloudFormation stack in moto holding the template's outputs, resolved to the local resources."""
    outputs = {name: str(stack.resolve(output["Value"])) for name, output in stack.template.get("Outputs", {}).items()}
    template = {
        "Resources": {"Placeholder": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
        "Outputs": {name: {"Value": value} for name, value in outputs.items()},
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # moto does not model the placeholder; only the outputs matter
        cloudformation.create_stack(StackName=stack.name, TemplateBody=json.dumps(template))
    return outputs
