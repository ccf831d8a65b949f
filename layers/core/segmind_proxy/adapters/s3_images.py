"""The image store in S3: a per-tenant cache keyed by request hash, plus short-lived objects for URL delivery."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from botocore.exceptions import ClientError

from segmind_proxy.adapters.aws_clients import AwsErrors, raising_outages, s3
from segmind_proxy.domain.errors import Dependency
from segmind_proxy.domain.images import StoredSet, recorded_count
from segmind_proxy.observability import MetricUnit, logger, metrics

DAY_SECONDS = 86400


def renewal_age(expiration_days: int, must_outlive_seconds: float) -> float:
    """The age at which a cached set still in use is renewed: late enough to be rare, early enough that what is
    handed out now (a URL, a job record) outlives it by `must_outlive_seconds` plus the day S3's lifecycle may
    take. At most once per half of the expiry, however long that is asked to be."""
    expiry = expiration_days * DAY_SECONDS
    return max(expiry / 2, expiry - must_outlive_seconds - DAY_SECONDS)


@raising_outages(Dependency.STORAGE)
class ImageStore:
    def __init__(
        self,
        bucket: str,
        client: Callable[[], Any] = s3,
        *,
        renew_after_seconds: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`renew_after_seconds`: a cached set found older than this is copied onto itself (see `_renew_if_old`)."""
        self.bucket = bucket
        self._client = client
        self._renew_after = renew_after_seconds
        self._clock = clock

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
        keys = keys[: recorded_count(first.get("Metadata", {}), len(keys))]  # a short batch holds fewer
        if len(keys) > 1:
            with ThreadPoolExecutor(max_workers=min(8, len(keys) - 1)) as pool:
                images += pool.map(lambda key: client.get_object(Bucket=self.bucket, Key=key)["Body"].read(), keys[1:])
        self._renew_if_old(stored, first)
        return images, first.get("Metadata", {})

    def head(self, stored: StoredSet) -> dict[str, str] | None:
        """Metadata of a stored set (from image 0), or None if absent: enough to presign without reading bytes."""
        try:
            found = self._client().head_object(Bucket=self.bucket, Key=stored.object_keys()[0])
        except ClientError as exc:
            if _is_missing(exc):
                return None
            raise
        self._renew_if_old(stored, found)
        return found.get("Metadata", {})

    def _renew_if_old(self, stored: StoredSet, found: dict[str, Any]) -> None:
        """A cached set near the bucket's expiry is copied onto itself, which restarts S3's lifecycle clock: images
        still asked for stay cached, and URLs handed out for them now outlive their TTL. Best effort."""
        modified = found.get("LastModified")
        if self._renew_after is None or not stored.in_cache or modified is None:
            return
        if self._clock() - modified.timestamp() < self._renew_after:
            return
        client = self._client()
        extra = {"ContentType": found["ContentType"]} if found.get("ContentType") else {}

        def copy(key: str) -> None:
            client.copy_object(
                Bucket=self.bucket,
                Key=key,
                CopySource={"Bucket": self.bucket, "Key": key},
                MetadataDirective="REPLACE",  # what S3 asks of a copy onto itself; the same metadata, kept
                TaggingDirective="REPLACE",  # none are set: no tag read (s3:GetObjectTagging) needed
                Metadata=found.get("Metadata", {}),
                **extra,
            )

        try:
            _rest_then_first(stored.object_keys(), copy)
        except AwsErrors:
            logger.warning("Could not renew cached images; they expire as first written", exc_info=True)
            metrics.add_metric(name="StorageErrors", unit=MetricUnit.Count, value=1)
            return
        metrics.add_metric(name="CacheRenewals", unit=MetricUnit.Count, value=1)

    def write(self, stored: StoredSet, images: list[bytes], content_type: str, metadata: dict[str, str]) -> None:
        client = self._client()
        bodies = dict(zip(stored.object_keys(), images, strict=True))

        def put(key: str) -> None:
            client.put_object(
                Bucket=self.bucket, Key=key, Body=bodies[key], ContentType=content_type, Metadata=metadata
            )

        _rest_then_first(list(bodies), put)

    def presign(self, stored: StoredSet, expires_in: int) -> list[str]:
        client = self._client()
        return [
            client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_in
            )
            for key in stored.object_keys()
        ]


def _rest_then_first(keys: list[str], action: Callable[[str], None]) -> None:
    """`action` on every image but the first at once, then on image 0: its presence means the set is whole."""
    if len(keys) > 1:
        with ThreadPoolExecutor(max_workers=min(8, len(keys) - 1)) as pool:
            list(pool.map(action, keys[1:]))
    action(keys[0])


def _is_missing(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") in {"NoSuchKey", "404", "NotFound"}
