"""How a request may use the cache, from its Cache-Control header and seed."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from segmind_proxy.domain.errors import NotCached

if TYPE_CHECKING:
    from segmind_proxy.domain.request import Txt2ImgRequest


class CacheStatus(StrEnum):
    HIT = "HIT"  # served from the cache, no upstream call
    MISS = "MISS"  # looked up, not found, generated
    BYPASS = "BYPASS"  # generated without looking (seed -1 or Cache-Control: no-cache)


@dataclass(frozen=True)
class CachePolicy:
    read: bool = True
    write: bool = True
    only_cached: bool = False  # only-if-cached: answer from the cache or not at all, never generate

    @classmethod
    def from_header(cls, cache_control: str | None) -> CachePolicy:
        directives = {part.strip().split("=")[0].lower() for part in (cache_control or "").split(",")}
        return cls(
            read="no-cache" not in directives,
            write="no-store" not in directives,
            only_cached="only-if-cached" in directives,
        )

    def reads(self, request: Txt2ImgRequest) -> bool:
        """Whether this request looks in the cache: a random seed (-1) never can."""
        return self.read and not request.random_seed

    def check_may_generate(self, request: Txt2ImgRequest) -> None:
        """Called once the cache had nothing: with only-if-cached, NotCached, before any cost."""
        if not self.only_cached:
            return
        if request.random_seed:
            reason = "a random seed (-1) is never in the cache"
        elif not self.read:
            reason = "no-cache forbids answering from the cache"
        else:
            reason = "these images are not in the cache"
        raise NotCached(f"Cache-Control: only-if-cached, and {reason}: nothing was generated or charged")
