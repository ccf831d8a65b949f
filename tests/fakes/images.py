"""The image store in memory, as adapters/s3_images.py keeps it in S3: `{prefix}/{index}.{ext}` objects, the first
written last (its presence means the set is whole) and recording how many the set holds."""

from __future__ import annotations

import threading

from segmind_proxy.domain.errors import Dependency
from segmind_proxy.domain.images import StoredSet, recorded_count
from tests.fakes.errors import Breakable, missing_object


class FakeImageStore(Breakable):
    """An `ImageStore`. `objects` maps each key to its (bytes, content type, metadata); `unreachable("read",
    "head", "write", "presign")` makes those unreachable."""

    dependency = Dependency.STORAGE

    def __init__(self) -> None:
        super().__init__()
        self.objects: dict[str, tuple[bytes, str, dict[str, str]]] = {}
        self.writes = 0  # sets written
        self._lock = threading.Lock()

    def read(self, stored: StoredSet) -> tuple[list[bytes], dict[str, str]] | None:
        self._may_fail("read")
        keys = stored.object_keys()
        with self._lock:
            first = self.objects.get(keys[0])
            if first is None:
                return None
            metadata = dict(first[2])
            images = []
            for key in keys[: recorded_count(metadata, len(keys))]:
                if key not in self.objects:
                    raise missing_object(key)
                images.append(self.objects[key][0])
        return images, metadata

    def head(self, stored: StoredSet) -> dict[str, str] | None:
        self._may_fail("head")
        with self._lock:
            first = self.objects.get(stored.object_keys()[0])
        return None if first is None else dict(first[2])

    def write(self, stored: StoredSet, images: list[bytes], content_type: str, metadata: dict[str, str]) -> None:
        self._may_fail("write")
        bodies = list(zip(stored.object_keys(), images, strict=True))
        with self._lock:
            for key, body in [*bodies[1:], bodies[0]]:  # the first last, as in S3
                self.objects[key] = (body, content_type, dict(metadata))
            self.writes += 1

    def presign(self, stored: StoredSet, expires_in: int) -> list[str]:
        self._may_fail("presign")
        return [f"https://images.fake/{key}?expires_in={expires_in}" for key in stored.object_keys()]

    # -- for tests ---------------------------------------------------------------------------------------------------
    def keys(self) -> list[str]:
        with self._lock:
            return sorted(self.objects)

    def expire(self, prefix: str) -> None:
        """The bucket's lifecycle removed a set."""
        with self._lock:
            for key in [key for key in self.objects if key.startswith(f"{prefix}/")]:
                del self.objects[key]
