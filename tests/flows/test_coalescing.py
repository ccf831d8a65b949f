"""Identical concurrent requests make one upstream call; a crashed owner's lease expires; images cached after the
answer keep identical requests waiting for them."""

import dataclasses
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest

from local.fake_segmind import render
from local.moto_server import start_moto
from segmind_proxy.adapters.dynamo_leases import LeaseStore
from segmind_proxy.adapters.s3_images import ImageStore
from segmind_proxy.domain.cache_policy import CachePolicy, CacheStatus
from segmind_proxy.domain.errors import GatewayError
from segmind_proxy.domain.request import Txt2ImgRequest
from segmind_proxy.domain.upstream import Generation
from segmind_proxy.flows.generate import GenerationService
from tests.support.aws import create_table
from tests.support.lambda_events import Later

REQUEST = Txt2ImgRequest.model_validate({"prompt": "coalesce me", "width": 128, "height": 128})


class SlowUpstream:
    """Counts calls; each takes `seconds`."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.calls = 0
        self.lock = threading.Lock()

    def txt2img(self, slug, payload, *, deadline):
        with self.lock:
            self.calls += 1
        time.sleep(self.seconds)
        image = render(payload["prompt"], payload["seed"], payload["width"], payload["height"], "jpeg", 80)
        return Generation([image], "jpeg", payload["seed"], 42.0, "up-1", self.seconds * 1000, 1)


@pytest.fixture(scope="module")
def endpoint():
    server = start_moto("127.0.0.1", 0)
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.fixture
def service_factory(endpoint):
    session = boto3.session.Session(region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t")
    s3 = session.client("s3", endpoint_url=endpoint)
    unique = uuid.uuid4().hex[:12]
    bucket, table = f"b-{unique}", f"jobs-{unique}"
    s3.create_bucket(Bucket=bucket)
    create_table(session.resource("dynamodb", endpoint_url=endpoint), "JobsTable", table)
    local = threading.local()

    def ddb():
        if not hasattr(local, "ddb"):
            local.ddb = session.resource("dynamodb", endpoint_url=endpoint)
        return local.ddb

    def make(upstream, later=None, bucket=bucket):
        return GenerationService(ImageStore(bucket, lambda: s3), upstream, LeaseStore(table, ddb), later=later)

    make.leases = LeaseStore(table, ddb)
    return make


def test_twenty_identical_concurrent_requests_make_one_upstream_call(service_factory):
    upstream = SlowUpstream(1.0)
    service = service_factory(upstream)

    def one(i):
        return service.generate(
            REQUEST,
            namespace="tenant-a",
            policy=CachePolicy(),
            by_url=False,
            deadline=time.monotonic() + 20,
            owner=f"r{i}",
        )

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(one, range(20)))
    assert upstream.calls == 1
    assert len({r.images[0] for r in results}) == 1
    assert sorted(r.cache.value for r in results).count("MISS") == 1
    assert sum(r.coalesced for r in results) >= 5  # many waited on the lease (the rest arrived after: plain hits)


def test_other_tenants_and_other_requests_do_not_coalesce(service_factory):
    upstream = SlowUpstream(0.3)
    service = service_factory(upstream)
    other = Txt2ImgRequest.model_validate({"prompt": "something else", "width": 128, "height": 128})
    jobs = [("tenant-a", REQUEST), ("tenant-b", REQUEST), ("tenant-a", other)]
    with ThreadPoolExecutor(max_workers=3) as pool:
        list(
            pool.map(
                lambda job: service.generate(
                    job[1],
                    namespace=job[0],
                    policy=CachePolicy(),
                    by_url=True,
                    deadline=time.monotonic() + 20,
                    owner=job[0],
                ),
                jobs,
            )
        )
    assert upstream.calls == 3


def test_a_crashed_owners_lease_expires_and_the_request_takes_over(service_factory):
    from segmind_proxy.domain.cache_key import cache_key

    upstream = SlowUpstream(0.0)
    service = service_factory(upstream)
    assert service_factory.leases.acquire(f"tenant-a#{cache_key(REQUEST)}", "dead-owner", 1.5)  # never released
    started = time.monotonic()
    result = service.generate(
        REQUEST, namespace="tenant-a", policy=CachePolicy(), by_url=False, deadline=time.monotonic() + 20, owner="me"
    )
    assert result.cache is CacheStatus.MISS and upstream.calls == 1
    assert 1.0 <= time.monotonic() - started < 15  # waited for the expiry, then took over


def test_a_redelivered_job_takes_its_dead_attempts_lease_at_once(service_factory):
    from segmind_proxy.domain.cache_key import cache_key

    upstream = SlowUpstream(0.0)
    service = service_factory(upstream)
    waits: list[float] = []
    service._sleep = waits.append  # what waiting for an identical request's images would call
    key = f"tenant-a#{cache_key(REQUEST)}"
    assert service_factory.leases.acquire(key, "job-42", 30)  # the killed attempt's, never released
    assert not service_factory.leases.acquire(key, "job-7", 30)  # still held against anyone else
    result = service.generate(
        REQUEST, namespace="tenant-a", policy=CachePolicy(), by_url=True, deadline=time.monotonic() + 20, owner="job-42"
    )
    assert result.cache is CacheStatus.MISS and upstream.calls == 1
    assert waits == []  # it did not wait for the old lease to lapse


def test_uncached_url_answers_without_an_upstream_request_id_never_share_objects(service_factory):
    class NoRequestId(SlowUpstream):
        def txt2img(self, slug, payload, *, deadline):
            return dataclasses.replace(super().txt2img(slug, payload, deadline=deadline), upstream_request_id=None)

    service = service_factory(NoRequestId(0.0))
    first, second = (
        service.generate(
            REQUEST.model_copy(update={"prompt": prompt}),
            namespace="tenant-a",
            policy=CachePolicy(write=False),
            by_url=True,
            deadline=time.monotonic() + 20,
            must_store=True,
        )
        for prompt in ("first", "second")
    )
    assert first.stored.prefix.startswith("tmp/tenant-a/") and second.stored.prefix.startswith("tmp/tenant-a/")
    assert first.stored.prefix != second.stored.prefix
    assert service.store.read(first.stored)[0] == first.images != second.images == service.store.read(second.stored)[0]


def test_random_seeds_and_no_store_never_wait(service_factory):
    upstream = SlowUpstream(0.0)
    service = service_factory(upstream)
    from segmind_proxy.domain.cache_key import cache_key

    service_factory.leases.acquire(f"tenant-a#{cache_key(REQUEST)}", "someone", 30)
    started = time.monotonic()
    service.generate(
        REQUEST, namespace="tenant-a", policy=CachePolicy(write=False), by_url=False, deadline=started + 20
    )
    random = Txt2ImgRequest.model_validate({"prompt": "coalesce me", "width": 128, "height": 128, "seed": -1})
    service.generate(random, namespace="tenant-a", policy=CachePolicy(), by_url=False, deadline=started + 20)
    assert upstream.calls == 2 and time.monotonic() - started < 2


class Ledger:
    """A Billing that records what it was asked; `refuse` makes every reservation a 402."""

    def __init__(self, refuse: bool = False) -> None:
        self.refuse = refuse
        self.events: list[str] = []

    def on_hit(self) -> None:
        self.events.append("hit")

    def reserve(self) -> None:
        self.events.append("reserve")
        if self.refuse:
            raise GatewayError(402, "budget", kind="budget")

    def settle(self, images: int, reported_balance: float | None) -> None:
        self.events.append("settle")

    def release(self, failed: bool = True) -> None:
        self.events.append(f"release failed={failed}")


def test_a_waiter_refused_by_its_budget_still_shares_the_images_for_free(service_factory):
    upstream = SlowUpstream(1.0)
    service = service_factory(upstream)
    owner, waiter = Ledger(), Ledger(refuse=True)

    def run(billing, name):
        return service.generate(
            REQUEST, namespace="t", policy=CachePolicy(), by_url=False, deadline=time.monotonic() + 20,
            billing=billing, owner=name,
        )  # fmt: skip

    with ThreadPoolExecutor(max_workers=2) as pool:
        first = pool.submit(run, owner, "owner")
        until = time.monotonic() + 10
        while upstream.calls == 0 and time.monotonic() < until:  # the owner holds the lease once it calls
            time.sleep(0.01)
        shared = pool.submit(run, waiter, "waiter").result()
    assert first.result().cache is CacheStatus.MISS and shared.coalesced and upstream.calls == 1
    assert owner.events == ["reserve", "settle"]
    assert waiter.events == ["reserve", "hit"]  # refused, but a shared generation costs nothing


def test_refused_with_nobody_generating_is_refused_and_frees_the_lease(service_factory):
    from segmind_proxy.domain.cache_key import cache_key

    upstream = SlowUpstream(0.0)
    service = service_factory(upstream)
    with pytest.raises(GatewayError) as refused:
        service.generate(
            REQUEST, namespace="t", policy=CachePolicy(), by_url=False, deadline=time.monotonic() + 20,
            billing=Ledger(refuse=True),
        )  # fmt: skip
    assert refused.value.status == 402 and upstream.calls == 0
    assert not service_factory.leases.held(f"t#{cache_key(REQUEST)}")


def test_a_request_that_times_out_waiting_for_an_identical_one_gives_its_reservation_back(service_factory):
    from segmind_proxy.domain.cache_key import cache_key

    upstream = SlowUpstream(0.0)
    service = service_factory(upstream)
    assert service_factory.leases.acquire(f"tenant-a#{cache_key(REQUEST)}", "slow-owner", 30)
    ledger = Ledger()
    with pytest.raises(GatewayError) as caught:
        service.generate(
            REQUEST,
            namespace="tenant-a",
            policy=CachePolicy(),
            by_url=False,
            deadline=time.monotonic() + 0.5,
            billing=ledger,
            owner="me",
        )
    assert caught.value.status == 504 and upstream.calls == 0
    assert ledger.events == ["reserve", "release failed=False"]


def test_a_stored_generation_lets_its_lease_lapse_and_a_failed_one_frees_it_at_once(service_factory):
    from segmind_proxy.domain.cache_key import cache_key

    class Broken:
        def txt2img(self, slug, payload, *, deadline):
            raise GatewayError(502, "upstream down", kind="server_error")

    def run(service, request):
        return service.generate(
            request, namespace="t", policy=CachePolicy(), by_url=False, deadline=time.monotonic() + 20
        )

    stored = service_factory(SlowUpstream(0.0))
    run(stored, REQUEST)
    # No DeleteItem on the miss: the images are in the cache, so an identical request is a hit, never a waiter.
    assert service_factory.leases.held(f"t#{cache_key(REQUEST)}")
    started = time.monotonic()
    assert run(stored, REQUEST).cache is CacheStatus.HIT and time.monotonic() - started < 1
    other = Txt2ImgRequest.model_validate({"prompt": "fails", "width": 128, "height": 128})
    with pytest.raises(GatewayError):
        run(service_factory(Broken()), other)
    assert not service_factory.leases.held(f"t#{cache_key(other)}")


def test_an_inline_answer_goes_before_its_images_are_cached_and_identical_requests_wait_for_them(service_factory):
    from segmind_proxy.domain.cache_key import cache_key

    upstream, later = SlowUpstream(0.0), Later()
    service = service_factory(upstream, later)

    def run(owner, store_later=None):
        return service.generate(
            REQUEST, namespace="t", policy=CachePolicy(), by_url=False, deadline=time.monotonic() + 20,
            owner=owner, store_later=store_later,
        )  # fmt: skip

    first = run("r1", store_later=lambda result: True)
    assert first.cache is CacheStatus.MISS and first.images and first.stored is None
    assert service._read_cache(REQUEST, "t", by_url=False) is None  # not written yet
    assert service_factory.leases.held(f"t#{cache_key(REQUEST)}")  # so an identical request waits, not generates
    with ThreadPoolExecutor(1) as pool:
        second = pool.submit(run, "r2")
        time.sleep(0.4)
        assert not second.done() and upstream.calls == 1
        later.run()  # the write, after the answer
        assert second.result(timeout=10).images == first.images
    assert upstream.calls == 1


def test_a_failed_write_after_the_answer_frees_the_lease_at_once(service_factory):
    from segmind_proxy.domain.cache_key import cache_key

    later = Later()
    service = service_factory(SlowUpstream(0.0), later, bucket="no-such-bucket")
    result = service.generate(
        REQUEST, namespace="t", policy=CachePolicy(), by_url=False, deadline=time.monotonic() + 20,
        store_later=lambda result: True,
    )  # fmt: skip
    assert result.images and service_factory.leases.held(f"t#{cache_key(REQUEST)}")
    later.run()
    assert not service_factory.leases.held(f"t#{cache_key(REQUEST)}")


@pytest.mark.parametrize("must_store, fits", [(True, True), (False, False)], ids=["replay", "too-big"])
def test_stored_before_answering(service_factory, must_store, fits):
    """Images a replay needs, or that the answer cannot carry (URLs instead), are stored before answering."""
    later = Later()
    service = service_factory(SlowUpstream(0.0), later)
    result = service.generate(
        REQUEST, namespace="t", policy=CachePolicy(), by_url=False, deadline=time.monotonic() + 20,
        must_store=must_store, store_later=lambda result: fits,
    )  # fmt: skip
    assert later.tasks == [] and result.storing is None
    assert result.stored is not None and service._read_cache(REQUEST, "t", by_url=False) is not None
