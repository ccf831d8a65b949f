"""The worker's side of v2 jobs (JobRunner) on the fakes: a job completes once and is charged once however often it
is delivered; a retryable failure gives the budget back and has SQS deliver it again; the last attempt, a failure
that retrying cannot mend, or the dead-letter queue fail it for good; its webhook goes once."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from segmind_proxy.domain.errors import FailureKind, UpstreamFailure
from segmind_proxy.domain.images import stored_set
from segmind_proxy.domain.jobs import Job, JobStatus
from segmind_proxy.domain.request import default_model, validated
from segmind_proxy.domain.usage import Hold
from segmind_proxy.flows.generate import GenerationService
from segmind_proxy.flows.job_runner import JobRunner, RetryLater
from tests.fakes import FakeClock, FakeJobQueue, FakeJobStore, FakeLeases, FakeWebhooks
from tests.support.aws import make_tenant

REQUEST = validated(default_model(), {"prompt": "a job", "width": 128, "height": 128, "seed": 9})
ESTIMATE = 0.01
MAX_ATTEMPTS = 3
HOOK = "https://hooks.example/jobs"


@pytest.fixture
def webhooks():
    return FakeWebhooks()


@pytest.fixture
def acme(tenants):
    return make_tenant(tenants, budget_credits=1.0)


def runner_over(jobs, store, segmind, tenants, ledger, webhooks=None):
    service = GenerationService(store, segmind, FakeLeases())
    runner = JobRunner(jobs, service, tenants, ledger, MAX_ATTEMPTS, 3600, webhooks or FakeWebhooks())
    return replace(runner, queue=FakeJobQueue())


@pytest.fixture
def runner(jobs, store, segmind, tenants, ledger, webhooks):
    return runner_over(jobs, store, segmind, tenants, ledger, webhooks)


def submit(jobs, ledger, tenant, webhook_url=None):
    """A job as the API's submit leaves it: queued, its estimate reserved and the reservation recorded on it."""
    job = Job(
        job_id=Job.new_id(),
        namespace=tenant.tenant_id,
        tenant_id=tenant.tenant_id,
        request=REQUEST.model_dump(),
        estimate=ESTIMATE,
        webhook_url=webhook_url,
    )
    reservation, _ = ledger.reserve(tenant, ESTIMATE, REQUEST.batch_size, Hold.for_job(job.job_id))
    job.reservation = vars(reservation)
    return jobs.create(job)


def run(runner, job, attempt=1):
    """One delivery of the job's message (`attempt`: SQS's receive count)."""
    runner.run(job.job_id, attempt, time.monotonic() + 60, f"receipt-{attempt}")
    return runner.jobs.get(job.job_id)


def figures(ledger, tenant):
    usage = ledger.usage(tenant.tenant_id)
    return {
        "images": usage.images_generated,
        "failed": usage.failed_generations,
        "spent": round(usage.credits_spent, 6),
        "held": round(usage.credits_committed - usage.credits_spent, 6),
    }


CHARGED_ONCE = {"images": 1, "failed": 0, "spent": ESTIMATE, "held": 0}


def failure(kind):
    return UpstreamFailure(FailureKind(kind), f"Segmind failed ({kind})")


def test_a_job_completes_once_and_is_charged_once(runner, jobs, store, segmind, ledger, acme):
    job = submit(jobs, ledger, acme)
    done = run(runner, job)
    assert done.status is JobStatus.COMPLETED and done.attempts == 1 and len(segmind.calls) == 1
    assert done.result["cache"] == "MISS" and store.head(stored_set(done.result)) is not None
    assert figures(ledger, acme) == CHARGED_ONCE
    again = run(runner, job, attempt=2)  # SQS delivers at least once
    assert again.status is JobStatus.COMPLETED and again.result == done.result and len(segmind.calls) == 1
    assert figures(ledger, acme) == CHARGED_ONCE


def test_a_retryable_failure_gives_the_budget_back_and_the_next_delivery_completes_it(
    runner, jobs, segmind, ledger, acme
):
    job = submit(jobs, ledger, acme)
    segmind.fail_next(failure("server_error"))
    with pytest.raises(RetryLater) as later:
        run(runner, job, attempt=1)
    assert later.value.delay == 20  # backing off: 10 s doubled per delivery
    assert runner.queue.put_off == [("receipt-1", 20)]  # comes back then, not after the queue's visibility timeout
    requeued = jobs.get(job.job_id)
    assert requeued.status is JobStatus.QUEUED and requeued.reservation is None
    assert figures(ledger, acme) == {"images": 0, "failed": 1, "spent": 0, "held": 0}
    done = run(runner, job, attempt=2)
    assert done.status is JobStatus.COMPLETED and done.attempts == 2 and len(segmind.calls) == 2
    assert figures(ledger, acme) == {**CHARGED_ONCE, "failed": 1}


def test_a_failure_that_retrying_cannot_mend_fails_the_job_at_once(runner, jobs, segmind, ledger, acme, webhooks):
    job = submit(jobs, ledger, acme, webhook_url=HOOK)
    segmind.fail_next(failure("rejected"))
    failed = run(runner, job)
    assert failed.status is JobStatus.FAILED and "rejected" in failed.error
    assert figures(ledger, acme) == {"images": 0, "failed": 1, "spent": 0, "held": 0}
    assert [d.payload["status"] for d in webhooks.delivered] == ["FAILED"]


def test_the_last_delivery_gives_up_on_a_retryable_failure(runner, jobs, segmind, ledger, acme):
    job = submit(jobs, ledger, acme)
    segmind.fail_next(failure("server_error"))
    failed = run(runner, job, attempt=MAX_ATTEMPTS)
    assert failed.status is JobStatus.FAILED
    assert figures(ledger, acme)["held"] == 0


def test_a_dead_lettered_job_is_failed_and_its_reservation_released(runner, jobs, segmind, ledger, acme):
    job = submit(jobs, ledger, acme)
    runner.give_up(job.job_id)
    failed = jobs.get(job.job_id)
    assert failed.status is JobStatus.FAILED and failed.error == f"gave up after {MAX_ATTEMPTS} attempts"
    assert figures(ledger, acme) == {"images": 0, "failed": 1, "spent": 0, "held": 0} and segmind.calls == []
    runner.give_up(job.job_id)  # dead-lettered twice: still released once
    assert figures(ledger, acme)["failed"] == 1


def test_a_job_another_worker_holds_comes_back_later_untouched(runner, jobs, segmind, ledger, acme):
    job = submit(jobs, ledger, acme)
    jobs.start(job, lease_seconds=30)  # another delivery's worker is on it
    with pytest.raises(RetryLater) as later:
        run(runner, job, attempt=2)
    assert 1 <= later.value.delay <= 31 and segmind.calls == []
    assert runner.queue.put_off == [("receipt-2", later.value.delay)]
    assert jobs.get(job.job_id).status is JobStatus.PROCESSING


def test_a_worker_that_died_after_generating_is_taken_over_without_paying_twice(
    store, segmind, tenants, ledger, acme, webhooks
):
    clock = FakeClock(now=time.time())
    jobs = FakeJobStore(clock)
    runner = runner_over(jobs, store, segmind, tenants, ledger)
    job = submit(jobs, ledger, acme)
    jobs.unreachable("complete")  # the worker dies between storing the images and recording them
    with pytest.raises(Exception):  # noqa: B017 (whatever it died of)
        run(runner, job)
    jobs.recover()
    assert jobs.get(job.job_id).status is JobStatus.PROCESSING and len(segmind.calls) == 1
    clock.advance(120)  # its lease has passed: the redelivery takes the job over
    done = run(runner, job, attempt=2)
    assert done.status is JobStatus.COMPLETED and done.attempts == 2
    assert len(segmind.calls) == 1  # it found the images the dead attempt made
    assert figures(ledger, acme) == CHARGED_ONCE


def test_the_webhook_goes_once_signed_with_the_tenants_secret(runner, jobs, ledger, acme, webhooks):
    job = submit(jobs, ledger, acme, webhook_url=HOOK)
    done = run(runner, job)
    run(runner, job, attempt=2)  # a redelivery after completion sends nothing again
    [delivery] = webhooks.delivered
    assert delivery.url == HOOK and delivery.secret == acme.webhook_secret
    assert delivery.payload["request_id"] == job.job_id and delivery.payload["status"] == "COMPLETED"
    assert delivery.payload["outputs"] == [delivery.payload["output"]] and delivery.payload["expires_in"] == 3600
    assert done.webhook == {"delivered": True, "attempts": 1, "status": 200}


def test_a_webhook_without_a_signing_secret_is_not_sent(runner, jobs, tenants, ledger, webhooks):
    secretless = make_tenant(tenants, "nosecret", "key-nosecret", webhook_secret="")
    job = submit(jobs, ledger, secretless, webhook_url=HOOK)
    done = run(runner, job)
    assert webhooks.delivered == [] and done.webhook["delivered"] is False
