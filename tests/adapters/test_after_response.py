"""Work after the answer: the internal extension against the local Extensions API, as a Lambda container runs it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import pytest

from local.extensions_api import ExtensionsApi, deadline_ms
from segmind_proxy.adapters.after_response import AfterResponse
from segmind_proxy.observability import metrics

ARN = "arn:aws:lambda:us-east-1:123456789012:function:ApiFunction"


@pytest.fixture
def container() -> Iterator[tuple[ExtensionsApi, AfterResponse]]:
    """A container's init: the extension registers while the handler is imported, then init ends."""
    api = ExtensionsApi("ApiFunction", "app.lambda_handler")
    after = AfterResponse()
    assert after.start(api.address)
    assert api.init_done(timeout=5), "the extension never asked for its first event"
    yield api, after
    api.close()


def test_work_deferred_by_an_invocation_runs_after_it_and_holds_the_container(container):
    api, after = container
    started, release, done = threading.Event(), threading.Event(), []
    assert api.invoke("r1", deadline_ms(30), ARN, timeout=5)
    with after.invocation():
        after.defer(lambda: (started.set(), release.wait(10), done.append("stored")))
        assert not started.wait(0.2)  # nothing runs alongside the handler
    assert started.wait(5)
    # The handler has returned (its answer is on its way), and the work is still going: the container is held.
    assert done == []
    assert not api.wait_idle(timeout=0.3)
    release.set()
    assert api.wait_idle(timeout=5)
    assert done == ["stored"]
    # The next invocation is given out only now, as Lambda would.
    assert api.invoke("r2", deadline_ms(30), ARN, timeout=0.1)
    with after.invocation():
        pass
    assert api.wait_idle(timeout=5)


def test_without_an_extension_deferred_work_runs_before_returning():
    after, done = AfterResponse(), []
    with after.invocation():
        after.defer(done.append, "stored")
        assert done == ["stored"]


def test_registration_after_init_is_refused_and_work_then_runs_at_once(container):
    api, _ = container
    late, done = AfterResponse(), []
    assert not late.start(api.address)
    assert not late.active
    with late.invocation():
        late.defer(done.append, "stored")
        assert done == ["stored"]


def test_unreachable_extensions_api_means_work_runs_at_once():
    after = AfterResponse()
    assert not after.start("127.0.0.1:9")  # nothing listens there
    done: list[str] = []
    after.defer(done.append, "stored")
    assert done == ["stored"]


def test_internal_extensions_cannot_ask_for_shutdown():
    api = ExtensionsApi("ApiFunction", "app.lambda_handler")
    try:
        status, body, identifier = api.register("x", json.dumps({"events": ["INVOKE", "SHUTDOWN"]}).encode())
        assert (status, identifier) == (400, None)
        assert body["errorType"] == "ShutdownEventNotSupportedForInternalExtension"
    finally:
        api.close()


def test_a_failing_task_is_logged_and_frees_the_container(container, caplog):
    api, after = container
    api.invoke("r1", deadline_ms(30), ARN, timeout=5)
    with after.invocation():
        after.defer(lambda: 1 / 0)
    assert api.wait_idle(timeout=5)
    assert "Deferred work failed" in caplog.text


def test_work_unfinished_at_the_deadline_is_reported_and_the_container_freed(container, caplog):
    api, after = container
    stuck = threading.Event()
    api.invoke("r1", int((time.time() + 0.5) * 1000), ARN, timeout=5)
    with after.invocation():
        after.defer(stuck.wait, 10)
    assert api.wait_idle(timeout=5)
    stuck.set()
    assert "Deferred work unfinished at the invocation deadline" in caplog.text


def test_metrics_recorded_after_the_handlers_flush_are_emitted_by_the_extension(container, capsys, monkeypatch):
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "SegmindProxy")
    api, after = container
    late = threading.Event()
    api.invoke("r1", deadline_ms(30), ARN, timeout=5)
    with after.invocation():
        after.defer(lambda: (late.wait(10), metrics.add_metric(name="StorageErrors", unit="Count", value=1)))
    late.set()  # after the handler, and so after its own flush
    assert api.wait_idle(timeout=5)
    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert any(blob.get("StorageErrors") == [1.0] or blob.get("StorageErrors") == 1.0 for blob in emitted)
    assert not metrics.metric_set


def test_with_detailed_tracing_the_extensions_long_polls_are_not_traced():
    import http.client

    from aws_xray_sdk.ext.httplib.patch import _ignore_request

    api = ExtensionsApi("ApiFunction", "app.lambda_handler")
    try:
        assert AfterResponse().start(api.address)
        connection = http.client.HTTPConnection("127.0.0.1")
        assert _ignore_request(connection, "127.0.0.1", "/2020-01-01/extension/event/next")
        assert not _ignore_request(connection, "127.0.0.1", "/v1/stable-diffusion-3.5-turbo-txt2img")
    finally:
        api.close()
