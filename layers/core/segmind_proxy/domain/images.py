"""Generated images as values: where a set lives in the store (cache or transient), what a generation or a hit
yields, and the small record of them that jobs and Idempotency-Key outcomes keep."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from segmind_proxy.domain.cache_policy import CacheStatus
from segmind_proxy.domain.image_formats import MEDIA_TYPES
from segmind_proxy.domain.provenance import Provenance

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def namespace_for(api_key_id: str | None) -> str:
    """The tenant namespace: API Gateway's key id, made safe for an S3 key."""
    return _UNSAFE.sub("_", api_key_id) if api_key_id else "anonymous"


_CACHE_ROOT = "cache/"


@dataclass(frozen=True)
class StoredSet:
    """Where a generation's images live: `{prefix}/{index}.{ext}` for index 0..count-1."""

    prefix: str
    count: int
    image_format: str

    @classmethod
    def cached(cls, namespace: str, key: str, count: int, image_format: str) -> StoredSet:
        return cls(f"{_CACHE_ROOT}{namespace}/{key}", count, image_format)

    @property
    def in_cache(self) -> bool:
        """Under a cache key, where identical requests look (not a transient set behind presigned URLs)."""
        return self.prefix.startswith(_CACHE_ROOT)

    @classmethod
    def transient(cls, namespace: str, request_id: str, count: int, image_format: str) -> StoredSet:
        """Objects that only back presigned URLs (not cacheable); the bucket lifecycle removes them within a day."""
        return cls(f"tmp/{namespace}/{_UNSAFE.sub('_', request_id)}", count, image_format)

    def object_keys(self) -> list[str]:
        return [f"{self.prefix}/{index}.{self.image_format}" for index in range(self.count)]


@dataclass
class ImageResult:
    image_format: str
    content_type: str
    seed: int | None
    cache: CacheStatus
    count: int  # images delivered: Segmind may return fewer than asked
    images: list[bytes] | None = None  # None for a hit answered by URL, read from storage never
    stored: StoredSet | None = None  # where the images are in S3, if they are
    coalesced: bool = False  # served from an identical request's generation
    storing: StoredSet | None = None  # where they are being cached after the answer (`store_later`)
    generated_by: str | None = None  # the owner (request or job) whose upstream call made them, kept in S3
    upstream_request_id: str | None = None  # Segmind's id of the call that made them, kept in S3
    asked: int = 1  # the images the request asked for: a batch keeps its batch shape however many came
    provenance: Provenance = Provenance.UNMARKED  # the marks its images carry

    @property
    def cached(self) -> bool:
        """In the shared cache, or on their way there."""
        return self.storing is not None or (self.stored is not None and self.stored.in_cache)


def recorded_count(metadata: dict[str, str], fallback: int) -> int:
    """How many images a set holds, as its first object records (sets written before counts were, hold `fallback`)."""
    try:
        return max(1, min(fallback, int(metadata["count"])))
    except (KeyError, ValueError):
        return fallback


def stored_format(metadata: dict[str, str], fallback: str) -> str:
    """The format a stored image's bytes are in, as recorded when it was written (sets written before formats were
    recorded, and any unknown value, fall back to the format asked)."""
    recorded = metadata.get("format", "")
    return recorded if recorded in MEDIA_TYPES else fallback


def result_of(result: ImageResult) -> dict[str, Any]:
    """What a job keeps of its images: where they are, never the bytes."""
    assert result.stored is not None
    return {
        "prefix": result.stored.prefix,
        "count": result.stored.count,
        "image_format": result.stored.image_format,  # the objects' extension, which finds them (`stored_set`)
        "format": result.image_format,  # what their bytes are: Segmind may answer another format than asked
        "content_type": result.content_type,
        "seed": result.seed,
        "cache": result.cache.value,
        "asked": result.asked,
        "provenance": result.provenance.value,
    }


def stored_set(result: dict[str, Any]) -> StoredSet:
    return StoredSet(result["prefix"], int(result["count"]), result["image_format"])
