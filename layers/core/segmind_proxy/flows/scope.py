"""What one request carries down the flows, built once at the front door: who is calling, how long it may take,
how it is billed and the cache read started for it; and how it wants its images (`Plan`)."""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass, field

from segmind_proxy.domain.cache_policy import CachePolicy
from segmind_proxy.domain.images import ImageResult
from segmind_proxy.domain.usage import Caller
from segmind_proxy.flows.billing import Billing, NoBilling


@dataclass
class RequestScope:
    caller: Caller
    owner: str  # the request (or `job-<id>`) that holds the lease, the reservation and its transient images
    deadline: float  # on the monotonic clock
    billing: Billing = field(default_factory=NoBilling)
    prefetched: Future[ImageResult | None] | None = None  # this request's cache read, started at the edge

    @property
    def namespace(self) -> str:
        return self.caller.namespace


@dataclass(frozen=True)
class InlineAnswer:
    """The answer will carry the images whole if they fit in `limit` bytes (base64 or raw): caching them and
    settling their bill can then follow the answer (see adapters/after_response.py)."""

    as_base64: bool
    limit: int


@dataclass(frozen=True)
class Plan:
    policy: CachePolicy
    by_url: bool = False  # the answer is URLs: a hit need not read the bytes
    must_store: bool = False  # the images must end up in the store (URLs, Idempotency-Key replays, jobs)
    inline: InlineAnswer | None = None
    resumable: bool = False  # the owner is the same on every attempt (a job): images it made earlier are its own
