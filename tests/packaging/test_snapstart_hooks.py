"""SnapStart's runtime hooks, called as Lambda calls them: before the snapshot they build what it should hold, and
after each restore they make fresh what environments restored from one snapshot must not share."""

import random

import pytest
import snapshot_restore_py

from segmind_proxy import composition
from segmind_proxy.adapters import aws_clients, upstream_key
from segmind_proxy.api import schemas
from segmind_proxy.domain.jobs import Job
from segmind_proxy.flows import billing
from segmind_proxy.flows.generate import unique_id


def registered(registry):
    return [(func, args) for func, args, _ in registry]


@pytest.fixture
def hooks(aws, jobs_env):
    """The hooks the API and worker functions register at import (importing them again would not re-register)."""
    import functions.api.app as api
    import functions.worker.app as worker

    before = registered(snapshot_restore_py.get_before_snapshot())
    after = registered(snapshot_restore_py.get_after_restore())
    assert (composition.before_snapshot, (api.services, schemas.build_all)) in before
    assert (composition.before_snapshot, (worker.job_runner,)) in before
    assert after.count((composition.after_restore, ())) == 2

    def snapshot():  # as Lambda runs them: in reverse order of registration
        for func, args in reversed(before):
            func(*args)

    def restore():
        for func, args in after:
            func(*args)

    return snapshot, restore


def test_before_snapshot_builds_the_clients_and_wiring_without_connecting(hooks):
    snapshot, _ = hooks
    snapshot()
    for client in (aws_clients.s3, aws_clients.dynamodb, aws_clients.dynamodb_client, aws_clients.sqs):
        assert client.cache_info().currsize == 1
    assert composition.services.cache_info().currsize == 1
    wired = composition.services()
    # What a cold start leaves to first use (docs/performance.md, "Why the cold-start target is not met"), built beforehand.
    for deferred in (wired.generation.upstream, wired.webhooks, wired.once.idempotency, wired.jobs.idempotency):
        assert isinstance(deferred, composition.OnFirstUse) and deferred.built is not None
    assert all(model.__pydantic_complete__ for model in schemas.every_schema())
    assert upstream_key.secrets().store == {}  # the key itself is read after a restore, never held in a snapshot
    for pool in pools():
        assert not pool  # no request made: nothing open to be snapshotted


def pools():
    built = (aws_clients.s3(), aws_clients.dynamodb().meta.client, aws_clients.sqs(), aws_clients.secrets_manager())
    return [client._endpoint.http_session._manager.pools.keys() for client in built]


def test_restored_environments_draw_different_random_numbers(hooks):
    snapshot, restore = hooks
    snapshot()
    frozen = random.getstate()  # what every environment restored from the snapshot starts with

    def draws():
        return [random.random() for _ in range(5)]

    random.setstate(frozen)
    unseeded = draws()
    random.setstate(frozen)
    assert draws() == unseeded  # the hazard: two restored environments would draw the same jitter and samples

    random.setstate(frozen)
    restore()
    first = draws()
    random.setstate(frozen)
    restore()
    second = draws()
    assert first != second and unseeded not in (first, second)


def test_restored_environments_draw_different_ids(hooks):
    snapshot, restore = hooks
    snapshot()
    frozen = random.getstate()
    ids = set()
    for _ in range(2):
        random.setstate(frozen)
        restore()
        ids |= {unique_id(), Job.new_id()}
    assert len(ids) == 4


def test_after_restore_opens_fresh_connections(hooks, upstream, aws):
    snapshot, restore = hooks
    snapshot()
    for client in (aws_clients.s3(), aws_clients.dynamodb().meta.client):  # pools, as if used before the snapshot
        client._endpoint.http_session._manager.connection_from_url(client.meta.endpoint_url)
    assert sum(map(len, pools())) == 2
    segmind = composition.generation_service().upstream
    session = segmind._session
    restore()
    assert not any(pools())  # the next call opens its own
    assert segmind._session is not session
    assert aws_clients.s3().list_objects_v2(Bucket=aws["s3"].list_buckets()["Buckets"][0]["Name"])  # still usable


def test_after_restore_forgets_the_cached_key_and_balance_time(hooks, upstream):
    snapshot, restore = hooks
    snapshot()
    assert upstream_key.get_segmind_key()
    assert upstream_key.secrets().store
    billing._last_balance_write[0] = 10**9  # a time on the snapshotted environment's monotonic clock
    restore()
    assert upstream_key.secrets().store == {}
    assert billing._balance_due()
