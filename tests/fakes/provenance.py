"""A fake of the `Marker` port: it marks an image by appending a readable trailer (no XMP, no C2PA), records every
label, and can be made not ready (no chain) or failing (the key service down), as the C2PA adapter is."""

from __future__ import annotations

from segmind_proxy.domain.errors import Dependency
from segmind_proxy.domain.provenance import MarkLabel
from tests.fakes.errors import outage

TRAILER = b"\n#marked-by-fake:"


class FakeMarker:
    def __init__(self) -> None:
        self.labels: list[MarkLabel] = []
        self.not_ready = False
        self.failing = False
        self.readiness_checks = 0

    def ready(self) -> None:
        self.readiness_checks += 1
        if self.not_ready:
            raise outage(Dependency.SIGNING)

    def mark(self, image: bytes, image_format: str, label: MarkLabel) -> bytes:
        if self.failing or self.not_ready:
            raise outage(Dependency.SIGNING)
        self.labels.append(label)
        return image + TRAILER + label.model.encode()


def marked(image: bytes) -> bool:
    return TRAILER in image
