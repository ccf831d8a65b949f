"""What the front doors are handed by the composition root (built once per container), and what each request
brings from the edge."""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from segmind_proxy.domain.catalog import Catalog
from segmind_proxy.domain.images import ImageResult
from segmind_proxy.domain.ports import Deferrer, TenantDirectory, UsageLedger, Webhooks
from segmind_proxy.flows.generate import GenerationService
from segmind_proxy.flows.idempotent import OnceOnly
from segmind_proxy.flows.jobs import AsyncJobs
from segmind_proxy.flows.run_now import RunNow
from segmind_proxy.flows.screening import Screening
from segmind_proxy.settings import Settings

if TYPE_CHECKING:
    from segmind_proxy.api.delivery import Order


@dataclass(frozen=True)
class Services:
    generation: GenerationService
    settings: Settings
    catalog: Catalog  # the models served, with their prices
    tenants: TenantDirectory | None = None  # None: tenancy off, the cache namespaced by API key id alone
    ledger: UsageLedger | None = None  # None: metering off
    once: OnceOnly | None = None  # None: Idempotency-Key off (no jobs table)
    jobs: AsyncJobs | None = None  # None: v2 off
    webhooks: Webhooks | None = None
    later: Deferrer = field(default_factory=RunNow)  # what may follow the answer (counting a refusal, a hit)
    screening: Screening | None = None  # None: prompts are not screened


@dataclass(frozen=True)
class Incoming:
    """One HTTP request as the edge saw it. `headers` are lower-cased."""

    body: bytes | None
    headers: Mapping[str, str]
    request_id: str
    deadline: float  # on the monotonic clock: the invocation's end less the margin kept for answering
    context: Any = None  # the Lambda context
    prefetched: Future[ImageResult | None] | None = None  # the cache read started for it at the edge
    base_url: str = ""  # this API's absolute base URL as the client called it
    parsed: Order | None = None  # the body, translated by its front door at the edge
    model: str = ""  # the model a Segmind route's path names (its slug)
