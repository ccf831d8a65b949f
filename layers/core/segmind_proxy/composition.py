"""The composition root: the container's adapters, built on first use and reused across invocations, handed to
the flows and the front doors. The only module that knows both the adapters and the flows."""

from __future__ import annotations

import random
import threading
import weakref
from collections.abc import Callable
from functools import cache, partial
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from segmind_proxy.adapters.after_response import AFTER_RESPONSE
from segmind_proxy.adapters.aws_clients import build_clients, drop_connections
from segmind_proxy.adapters.dynamo_jobs import JobStore
from segmind_proxy.adapters.dynamo_leases import LeaseStore
from segmind_proxy.adapters.dynamo_tenants import TenantRegistry
from segmind_proxy.adapters.dynamo_usage import Meter
from segmind_proxy.adapters.s3_images import ImageStore, renewal_age
from segmind_proxy.adapters.sqs_queue import SqsJobQueue
from segmind_proxy.api.services import Services
from segmind_proxy.domain.catalog import Catalog, bundled_catalog
from segmind_proxy.domain.ports import Deferrer, Marker, PromptScreen
from segmind_proxy.domain.pricing import with_prices
from segmind_proxy.domain.request import checked, request_model
from segmind_proxy.domain.screening import ScreenMode, TermScreen
from segmind_proxy.flows.billing import forget_balance_write
from segmind_proxy.flows.generate import GenerationService
from segmind_proxy.flows.idempotent import OnceOnly
from segmind_proxy.flows.job_runner import JobRunner
from segmind_proxy.flows.jobs import AsyncJobs
from segmind_proxy.flows.screening import Screening
from segmind_proxy.flows.sweeper import ReservationSweeper
from segmind_proxy.observability import record_upstream_error
from segmind_proxy.settings import Settings, get_settings

if TYPE_CHECKING:
    from segmind_proxy.adapters.bedrock_guardrail import GuardrailScreen
    from segmind_proxy.adapters.idempotency import PowertoolsIdempotency
    from segmind_proxy.adapters.provenance import KmsMarker
    from segmind_proxy.adapters.segmind import SegmindClient
    from segmind_proxy.adapters.webhooks import WebhookSender

Built = TypeVar("Built")


class OnFirstUse(Generic[Built]):
    """An adapter imported and built on its first use (any attribute), once, for those a cache hit never uses: the
    Segmind client and the webhook sender (they import `requests`, about 20 ms of a cold start) and Powertools
    idempotency. SnapStart's before-snapshot hook builds every one made (`made`), so a restored environment pays
    nothing on its first miss either."""

    made: ClassVar[weakref.WeakSet[OnFirstUse[Any]]] = weakref.WeakSet()

    def __init__(self, build: Callable[[], Built]) -> None:
        self._build = build
        self._built: Built | None = None
        self._building = threading.Lock()
        OnFirstUse.made.add(self)

    def get(self) -> Built:
        if self._built is None:
            with self._building:  # two threads' first uses build one adapter
                if self._built is None:
                    self._built = self._build()
        return self._built

    @property
    def built(self) -> Built | None:
        return self._built

    def __getattr__(self, name: str) -> Any:
        return getattr(self.get(), name)


def segmind_client(settings: Settings) -> SegmindClient:
    from segmind_proxy.adapters.segmind import SegmindClient
    from segmind_proxy.adapters.upstream_key import get_segmind_key

    return SegmindClient(
        settings.segmind_base_url,
        get_segmind_key,
        max_attempts=settings.upstream_max_attempts,
        connect_timeout=settings.upstream_connect_timeout_seconds,
        on_attempt_error=record_upstream_error,
    )


def webhook_sender(settings: Settings) -> WebhookSender:
    from segmind_proxy.adapters.webhooks import WebhookSender

    return WebhookSender(settings.webhook_targets)


def powertools_idempotency() -> PowertoolsIdempotency:
    from segmind_proxy.adapters.idempotency import PowertoolsIdempotency

    return PowertoolsIdempotency()


def kms_marker(settings: Settings) -> KmsMarker:
    from segmind_proxy.adapters.provenance import KmsMarker

    return KmsMarker(settings.provenance_key_id, settings.provenance_chain_secret, settings.provenance_tsa_url)


def guardrail_screen() -> GuardrailScreen:
    from segmind_proxy.adapters.bedrock_guardrail import GuardrailScreen

    return GuardrailScreen()


def deferrer() -> Deferrer:
    """Where work that may follow the answer goes (caching its images, settling its bill, counting a refusal): after
    the response where the Lambda extension runs, else at once (see adapters/after_response.py)."""
    return AFTER_RESPONSE


@cache
def upstream() -> OnFirstUse[SegmindClient]:
    """Segmind, through the operator's key: built on its first use (a cache hit never uses it)."""
    return OnFirstUse(partial(segmind_client, get_settings()))


@cache
def marker() -> Marker | None:
    """What marks each generated image as AI-generated: None where the stack's switch is off (PROVENANCE_MARKS) or no
    signing key is configured. Built on its first use (a hit never marks: the C2PA library loads only for a miss)."""
    settings = get_settings()
    if not (settings.provenance_marks and settings.provenance_key_id):
        return None
    return OnFirstUse(partial(kms_marker, settings))


@cache
def screening() -> Screening:
    """Each tenant's prompts screened by its policy: the term list in the function, Bedrock Guardrails (built on its
    first use) for the tenants that chose it."""
    screens: dict[ScreenMode, PromptScreen] = {
        ScreenMode.TERMS: TermScreen(),
        ScreenMode.GUARDRAIL: OnFirstUse(guardrail_screen),
    }
    return Screening(screens, get_settings().screen_timeout_seconds, meter(), deferrer())


@cache
def generation_service() -> GenerationService:
    settings = get_settings()
    leases = LeaseStore(settings.jobs_table) if settings.jobs_table else None
    # What is handed out for a cached set must outlive its renewal: a URL, or a job record that presigns again.
    outlive = max(settings.presigned_url_ttl_seconds, settings.job_retention_hours * 3600)
    store = ImageStore(settings.cache_bucket, renew_after_seconds=renewal_age(settings.cache_expiration_days, outlive))
    return GenerationService(store, upstream(), leases, later=deferrer(), marker=marker())


@cache
def tenant_registry() -> TenantRegistry | None:
    """None when TENANTS_TABLE is unset: tenancy off, the cache namespaced by API key id alone."""
    table = get_settings().tenants_table
    return TenantRegistry(table) if table else None


@cache
def meter() -> Meter | None:
    table = get_settings().tenants_table
    return Meter(table) if table else None


@cache
def job_store() -> JobStore | None:
    table = get_settings().jobs_table
    return JobStore(table) if table else None


@cache
def job_queue() -> SqsJobQueue:
    return SqsJobQueue(get_settings().jobs_queue_url)


@cache
def catalog() -> Catalog:
    """The models served: the package's model files, each file checked (a bad one stops the function at start,
    naming it), with the operator's prices (`PRICE_TABLE`) in place of the files' where given."""
    return checked(with_prices(bundled_catalog(), get_settings().price_table))


@cache
def services() -> Services:
    """What the API function's front doors use."""
    settings = get_settings()
    generation = generation_service()
    once = None
    jobs = None
    if settings.jobs_table:
        idempotency = OnFirstUse(powertools_idempotency)
        once = OnceOnly(generation, idempotency, settings.inline_response_max_bytes)
        jobs = AsyncJobs(
            generation,
            job_store(),
            job_queue(),
            idempotency,
            settings.job_retention_hours,
            settings.presigned_url_ttl_seconds,
        )
    return Services(
        generation,
        settings,
        catalog(),
        tenants=tenant_registry(),
        ledger=meter(),
        once=once,
        jobs=jobs,
        webhooks=OnFirstUse(partial(webhook_sender, settings)),
        later=deferrer(),
        screening=screening(),
    )


def job_runner() -> JobRunner:
    """What the worker function runs each job with."""
    settings = get_settings()
    jobs = job_store()
    assert jobs is not None, "JOBS_TABLE must be set for the worker"
    return JobRunner(
        jobs=jobs,
        service=generation_service(),
        registry=tenant_registry(),
        meter=meter(),
        max_attempts=settings.max_job_attempts,
        url_ttl=settings.presigned_url_ttl_seconds,
        webhooks=OnFirstUse(partial(webhook_sender, settings)),
        catalog=catalog(),
        queue=job_queue(),
    )


def reservation_sweeper() -> ReservationSweeper | None:
    """None where metering is off: no reservations exist."""
    ledger = meter()
    return ReservationSweeper(ledger, job_store()) if ledger is not None else None


# SnapStart (docs/operations.md, "SnapStart"): the functions that use it register these two as runtime hooks at import. Lambda
# calls them only for a version published with SnapStart on; anywhere else registering them does nothing.


def before_snapshot(*wiring: Callable[[], Any]) -> None:
    """What a snapshot should hold, built before it is taken: the boto3 session and every client, the catalog and
    price table, the Secrets Manager provider (not the key: it is read after a restore), what `wiring` builds (the
    function's own adapters and flows) and every adapter it left to build on first use. No request is made, so no
    connection is open when the snapshot is."""
    from segmind_proxy.adapters.upstream_key import secrets

    build_clients()
    for model in catalog():
        request_model(model)
    secrets()
    for build in wiring:
        build()
    for adapter in list(OnFirstUse.made):
        adapter.get()


def after_restore() -> None:
    """What must not be shared by the environments restored from one snapshot, made fresh in each: the random
    module's state (reseeded from the OS), every connection (boto3's pools emptied, a new Segmind session), the
    cached Segmind key, and the monotonic time of the last balance write. Ids need nothing: uuid4 reads the OS's
    randomness at every call."""
    from segmind_proxy.adapters.upstream_key import forget_segmind_key

    random.seed()
    drop_connections()
    if upstream.cache_info().currsize:
        built = upstream().built
        if built is not None:  # its module is imported already
            from segmind_proxy.adapters.segmind import SegmindClient

            if isinstance(built, SegmindClient):
                built.reconnect()
    forget_segmind_key()
    forget_balance_write()
