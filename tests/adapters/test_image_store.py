"""The image store's renewal of cached sets still in use, against moto."""

import time
from typing import Any

import boto3
import pytest

from segmind_proxy.adapters.s3_images import DAY_SECONDS, ImageStore, renewal_age
from segmind_proxy.domain.images import StoredSet
from tests.support.aws import BUCKET, aws_unreachable

METADATA = {"generated-by": "req-1"}


class CountingS3:
    """The moto client, with its copies counted (and made to fail on demand)."""

    def __init__(self) -> None:
        self.client = boto3.client("s3")
        self.copied: list[str] = []
        self.fail = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def copy_object(self, **kwargs: Any) -> Any:
        if self.fail:
            aws_unreachable()
        self.copied.append(kwargs["Key"])
        return self.client.copy_object(**kwargs)


def store_aged(s3: CountingS3, age_days: float) -> ImageStore:
    """A store whose clock reads `age_days` after the objects were written, renewing from 28 days on."""
    return ImageStore(
        BUCKET, lambda: s3, renew_after_seconds=28 * DAY_SECONDS, clock=lambda: time.time() + age_days * DAY_SECONDS
    )


@pytest.fixture
def written(aws):
    s3 = CountingS3()
    cached = StoredSet.cached("tenant-a", "k" * 64, 3, "png")
    transient = StoredSet.transient("tenant-a", "req-1", 1, "png")
    plain = ImageStore(BUCKET, lambda: s3)
    for stored in (cached, transient):
        plain.write(stored, [b"img%d" % i for i in range(stored.count)], "image/png", METADATA)
    return s3, cached, transient


def test_a_cached_set_near_expiry_is_renewed_whole_keeping_type_and_metadata(written):
    s3, cached, _ = written
    images, metadata = store_aged(s3, 29).read(cached)
    assert images == [b"img0", b"img1", b"img2"] and metadata == METADATA
    assert sorted(s3.copied) == sorted(cached.object_keys()) and s3.copied[-1] == cached.object_keys()[0]
    for key in cached.object_keys():
        kept = s3.client.head_object(Bucket=BUCKET, Key=key)
        assert kept["ContentType"] == "image/png" and kept["Metadata"] == METADATA
    assert store_aged(s3, 29).head(cached) == METADATA  # by URL too
    assert len(s3.copied) == 6


def test_young_sets_transient_sets_and_stores_without_renewal_are_left_alone(written):
    s3, cached, transient = written
    store_aged(s3, 27).read(cached)
    store_aged(s3, 29).head(transient)  # URL-only objects expire in a day whatever happens
    ImageStore(BUCKET, lambda: s3, clock=lambda: time.time() + 400 * DAY_SECONDS).read(cached)
    assert s3.copied == []


def test_a_renewal_that_fails_still_answers(written):
    s3, cached, _ = written
    s3.fail = True
    assert store_aged(s3, 29).read(cached)[0] == [b"img0", b"img1", b"img2"]


@pytest.mark.parametrize(
    ("days", "outlive_days", "renew_at_days"),
    [(30, 1, 28), (30, 30, 15), (1, 1 / 24, 0.5), (7, 1, 5)],
)
def test_renewal_age_outlives_what_is_handed_out_and_is_at_most_twice_per_expiry(days, outlive_days, renew_at_days):
    assert renewal_age(days, outlive_days * DAY_SECONDS) == pytest.approx(renew_at_days * DAY_SECONDS)
