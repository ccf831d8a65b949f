"""How a request may use the cache, from its Cache-Control header and seed."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


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
