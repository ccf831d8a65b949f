"""The key authorizer hands API Gateway the key of either header as `usageIdentifierKey`, allows the whole stage (so
one cached answer serves every route), answers from the token alone (API Gateway caches by it), and refuses what is
not a key with API Gateway's 401 signal."""

import pytest

from functions.key_authorizer.app import lambda_handler

METHOD_ARN = "arn:aws:execute-api:us-east-1:123456789012:abc123/prod/POST/v1/stable-diffusion-3.5-turbo-txt2img"


def authorize(token):
    return lambda_handler({"type": "TOKEN", "authorizationToken": token, "methodArn": METHOD_ARN}, None)


def test_an_x_api_key_value_is_the_key():
    answer = authorize("tenant-key-0123456789abcdef")
    assert answer["usageIdentifierKey"] == "tenant-key-0123456789abcdef"
    assert answer["context"] == {"keySource": "x-api-key"}


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_a_bearer_token_is_the_key(scheme):
    answer = authorize(f"{scheme} tenant-key-0123456789abcdef")
    assert answer["usageIdentifierKey"] == "tenant-key-0123456789abcdef"
    assert answer["context"] == {"keySource": "bearer"}


def test_the_policy_allows_every_route_of_the_stage_and_names_no_key():
    answer = authorize("Bearer k-0123456789abcdef0123")
    assert answer["policyDocument"]["Statement"] == [
        {
            "Action": "execute-api:Invoke",
            "Effect": "Allow",
            "Resource": "arn:aws:execute-api:us-east-1:123456789012:abc123/prod/*/*",
        }
    ]
    assert "0123456789abcdef" not in answer["principalId"]


@pytest.mark.parametrize(
    "token", ["", "Bearer ", "Bearer  two-spaces", "Basic dXNlcjpwYXNz", "Bearer a b", "key with spaces", "ké"]
)
def test_what_is_not_a_key_is_refused_as_api_gateway_expects(token):
    # (A bare "Bearer" is a well-formed x-api-key value; BearerKey's validation expression refuses it uncalled.)
    with pytest.raises(Exception, match=r"^Unauthorized$"):
        authorize(token)


def test_a_missing_token_is_refused():
    with pytest.raises(Exception, match=r"^Unauthorized$"):
        lambda_handler({"type": "TOKEN", "methodArn": METHOD_ARN}, None)


def request(headers):
    return lambda_handler({"type": "REQUEST", "methodArn": METHOD_ARN, "headers": headers}, None)


def test_the_unserved_paths_authorizer_takes_either_header():
    assert request({"X-Api-Key": "k-0123456789abcdef"})["usageIdentifierKey"] == "k-0123456789abcdef"
    bearer = request({"Authorization": "Bearer k-0123456789abcdef"})
    assert bearer["usageIdentifierKey"] == "k-0123456789abcdef" and bearer["context"] == {"keySource": "bearer"}
    with pytest.raises(PermissionError, match=r"^Unauthorized$"):
        request({"Accept": "*/*"})
