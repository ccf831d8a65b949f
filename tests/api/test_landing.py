"""The landing page at the stage's root links to the playground and the docs under the stage's path, whether the
root was asked with its slash (`/prod/`) or without (`/prod`, where relative links would leave the stage)."""

import re

import pytest

from segmind_proxy.api.proxy_events import base_url, path_prefix
from tests.support.lambda_events import api_event, body_bytes


@pytest.mark.parametrize("asked", ["/prod/", "/prod"])
def test_the_landing_page_links_stay_under_the_stage(invoke, asked):
    event = api_event(method="GET", path="/", api_key_id=None)
    event["requestContext"]["path"] = asked
    answer = invoke(event)
    assert answer["statusCode"] == 200
    links = re.findall(r'href="([^"]+)"', body_bytes(answer).decode())
    assert {"/prod/playground", "/prod/docs", "/prod/openapi.json", "/prod/playground/app.css"} <= set(links)


@pytest.mark.parametrize(
    ("full_path", "path", "prefix"),
    [("/prod/", "/", "/prod"), ("/prod", "/", "/prod"), ("/prod/v1/usage", "/v1/usage", "/prod"), ("/", "/", "")],
)
def test_the_path_prefix_is_the_stage_or_nothing(full_path, path, prefix):
    event = {"path": path, "headers": {"Host": "api.example"}, "requestContext": {"path": full_path}}
    assert path_prefix(event) == prefix
    assert base_url(event) == f"https://api.example{prefix}"
