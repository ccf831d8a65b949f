"""Generated images in S3: a per-tenant cache keyed by request hash, plus short-lived objects for URL delivery."""

from __future__ import annotations

import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from .aws_clients import s3

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


class ImageStore:
    def __init__(self, bucket: str, client: Callable[[], Any] = s3) -> None:
        self.bucket = bucket
        self._client = client

    def read(self, stored: StoredSet) -> tuple[list[bytes], dict[str, str]] | None:
        """All images of a set, or None if absent. Image 0 is written last, so its presence means the set is whole."""
        client = self._client()
        keys = stored.object_keys()
        try:
            first = client.get_object(Bucket=self.bucket, Key=keys[0])
        except ClientError as exc:
            if _is_missing(exc):
                return None
            raise
        images = [first["Body"].read()]
        if len(keys) > 1:
            with ThreadPoolExecutor(max_workers=min(8, len(keys) - 1)) as pool:
                images += pool.map(lambda key: client.get_object(Bucket=self.bucket, Key=key)["Body"].read(), keys[1:])
        return images, first.get("Metadata", {})

    def head(self, stored: StoredSet) -> dict[str, str] | None:
        """Metadata of a stored set (from image 0), or None if absent: enough to presign without reading bytes."""
        try:
            return self._client().head_object(Bucket=self.bucket, Key=stored.object_keys()[0]).get("Metadata", {})
        except ClientError as exc:
            if _is_missing(exc):
                return None
            raise

    def write(self, stored: StoredSet, images: list[bytes], content_type: str, metadata: dict[str, str]) -> None:
        client = self._client()
        keys = stored.object_keys()

        def put(index: int) -> None:
            client.put_object(
                Bucket=self.bucket, Key=keys[index], Body=images[index], ContentType=content_type, Metadata=metadata
            )

        rest = list(range(len(keys) - 1, 0, -1))
        if rest:
            with ThreadPoolExecutor(max_workers=min(8, len(rest))) as pool:
                list(pool.map(put, rest))
        put(0)

    def presign(self, stored: StoredSet, expires_in: int) -> list[str]:
        client = self._client()
        return [
            client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_in
            )
            for key in stored.object_keys()
        ]


def _is_missing(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") in {"NoSuchKey", "404", "NotFound"}
