"""What the upstream model returns for one generation."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Generation:
    """What one upstream generation returned."""

    images: list[bytes]
    image_format: str
    seed: int | None
    remaining_credits: float | None
    upstream_request_id: str | None
    latency_ms: float
    attempts: int
