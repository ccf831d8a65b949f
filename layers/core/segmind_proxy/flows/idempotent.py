"""Generation under an Idempotency-Key: the first request with a key generates; a retry with the same key and body
is answered the first one's images from the store, with no upstream call and no charge."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from segmind_proxy.domain.cache_policy import CacheStatus
from segmind_proxy.domain.delivery import fits_inline, undeliverable
from segmind_proxy.domain.errors import Expired
from segmind_proxy.domain.images import ImageResult, result_of, stored_set
from segmind_proxy.domain.ports import Idempotency
from segmind_proxy.domain.provenance import Provenance
from segmind_proxy.domain.request import Txt2ImgRequest
from segmind_proxy.flows.generate import GenerationService
from segmind_proxy.flows.scope import Plan, RequestScope

# An outcome whose images were answered inline but not stored.
NOT_KEPT = "not_kept"


@dataclass(frozen=True)
class Keyed:
    """A request's Idempotency-Key, the route it is scoped to, and what a reuse of the key must match."""

    key: str
    route: str
    body: bytes | None
    context: Any = None  # the Lambda context: an interrupted first request's record expires with its invocation


class OnceOnly:
    def __init__(self, service: GenerationService, idempotency: Idempotency, inline_limit: int) -> None:
        self.service = service
        self.idempotency = idempotency
        self.inline_limit = inline_limit

    def generate(
        self, request: Txt2ImgRequest, scope: RequestScope, plan: Plan, keyed: Keyed
    ) -> tuple[ImageResult, bool]:
        """The images, and whether they are a replay of the key's first answer."""
        first: list[ImageResult] = []

        def produce() -> dict[str, Any]:
            first.append(self.service.generate(request, scope, plan))
            if first[0].stored is not None:
                return result_of(first[0])
            if not fits_inline(first[0], request.base64, self.inline_limit):
                raise undeliverable()  # not remembered: a retry with the key runs afresh
            # Storage failed, but this answer carries the images; a replay can only be told they were not kept.
            return {NOT_KEPT: True}

        scoped = (scope.namespace, keyed.route)
        outcome, replayed = self.idempotency.run_once(keyed.key, scoped, keyed.body, produce, keyed.context)
        return (first[0] if first else self._replay(outcome, by_url=plan.by_url)), replayed

    def _replay(self, outcome: dict[str, Any], *, by_url: bool) -> ImageResult:
        """The first answer's images, from the store: no upstream call, no charge."""
        if outcome.get(NOT_KEPT):
            raise Expired(
                "The images of this Idempotency-Key were delivered but could not be kept for replays (storage was "
                "unavailable); send a new key to generate again"
            )
        stored = stored_set(outcome)
        images = None
        if not by_url:
            images = self.service.images_of(stored)
            if images is None:
                raise Expired("The images of this Idempotency-Key have expired from storage")
        return ImageResult(
            image_format=outcome.get("format", outcome["image_format"]),
            content_type=outcome["content_type"],
            seed=outcome.get("seed"),
            cache=CacheStatus(outcome.get("cache", "MISS")),
            count=int(outcome["count"]),
            images=images,
            stored=stored,
            asked=int(outcome.get("asked", outcome["count"])),
            provenance=Provenance.recorded(outcome),
        )
