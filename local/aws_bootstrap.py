"""Creates in moto (server mode) every AWS resource the template declares that the functions use, under the template's names."""

from __future__ import annotations

from typing import Any

import boto3

from .template import Stack

LOCAL_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def local_session(region: str) -> boto3.session.Session:
    return boto3.session.Session(region_name=region, **LOCAL_CREDENTIALS)


def bootstrap(stack: Stack, endpoint: str, *, segmind_key: str, dev_api_key: str) -> dict[str, Any]:
    """Create buckets, secrets, the REST API, usage plans and the demo key; fill `stack.physical` with their ids."""
    session = local_session(stack.region)
    s3 = session.client("s3", endpoint_url=endpoint)
    for logical_id in stack.resources_of("AWS::S3::Bucket"):
        name = stack.default_name(logical_id)
        s3.create_bucket(Bucket=name)
        stack.physical[logical_id] = name

    secrets = session.client("secretsmanager", endpoint_url=endpoint)
    for logical_id, resource in stack.resources_of("AWS::SecretsManager::Secret").items():
        name = stack.resolve(resource["Properties"].get("Name")) or stack.default_name(logical_id)
        arn = secrets.create_secret(Name=name, SecretString=segmind_key)["ARN"]
        stack.physical[logical_id] = arn  # Ref of a secret is its ARN
        stack.arns[logical_id] = arn

    apigw = session.client("apigateway", endpoint_url=endpoint)
    api_id = apigw.create_rest_api(name=stack.name)["id"]
    stack.physical["GatewayApi"] = api_id
    plans = {}
    for logical_id, resource in stack.resources_of("AWS::ApiGateway::UsagePlan").items():
        throttle = stack.resolve(resource["Properties"].get("Throttle", {}))
        plan = apigw.create_usage_plan(
            name=logical_id,
            throttle={
                "rateLimit": float(throttle.get("RateLimit", 0)),
                "burstLimit": int(throttle.get("BurstLimit", 0)),
            }
            if throttle
            else {},
        )
        plans[logical_id] = plan["id"]
        stack.physical[logical_id] = plan["id"]
    demo = apigw.create_api_key(name="demo", value=dev_api_key, enabled=True, description="Local demo tenant")
    if plans:
        apigw.create_usage_plan_key(usagePlanId=next(iter(plans.values())), keyId=demo["id"], keyType="API_KEY")
    return {"demo_api_key_id": demo["id"], "rest_api_id": api_id, "usage_plans": plans}
