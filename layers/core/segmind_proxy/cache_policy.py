"""How a request may use the cache, from its Cache-Control header and seed."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .models import Txt2ImgRequest


class CacheStatus(StrEnum):
    HIT = "HIT"  # served from the cache, no upstream call
    MISS = "MISS"  # looked up, not found, generated
    BYPASS = "BYPASS"  # generated without looking (seed -1 or Cache-Control: no-cache)


@dataclass(frozen=True)
class CachePolicy:
    read: bool = True
    write: bool = True

    @classmethod
    def from_header(cls, cache_control: str | None) -> CachePolicy:
        directives = {part.strip().split("=")[0].lower() for part in (cache_control or "").split(",")}
        return cls(read="no-cache" not in directives, write="no-store" not in directives)

    def reads(self, request: Txt2ImgRequest) -> bool:
        """Whether this request looks in the cache: a random seed (-1) never can."""
        return self.read and not request.random_seed
