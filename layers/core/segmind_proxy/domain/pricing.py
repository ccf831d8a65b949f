"""Estimated upstream cost of a generation, from a configurable price table (size tier x steps x batch)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from importlib import resources

from segmind_proxy.domain.request import Txt2ImgRequest
from segmind_proxy.settings import get_settings


@dataclass(frozen=True)
class PriceTable:
    reference_steps: int
    size_tiers: tuple[tuple[float, float], ...]  # (max megapixels, credits per image), ascending

    @classmethod
    def from_json(cls, text: str) -> PriceTable:
        raw = json.loads(text)
        tiers = sorted((float(t["max_megapixels"]), float(t["credits_per_image"])) for t in raw["size_tiers"])
        if not tiers or int(raw["reference_steps"]) < 1:
            raise ValueError("a price table needs reference_steps >= 1 and at least one size tier")
        return cls(int(raw["reference_steps"]), tuple(tiers))

    def per_image(self, width: int, height: int, steps: int) -> float:
        megapixels = width * height / 1_000_000
        price = next((credits for limit, credits in self.size_tiers if megapixels <= limit), self.size_tiers[-1][1])
        return price * max(1.0, steps / self.reference_steps)

    def estimate(self, request: Txt2ImgRequest) -> float:
        width, height = request.size
        # Rounded up to 1e-6 credits, so estimates never undercount through float noise.
        return math.ceil(self.per_image(width, height, request.steps) * request.batch_size * 1e6) / 1e6


@cache
def price_table() -> PriceTable:
    override = get_settings().price_table
    if override:
        return PriceTable.from_json(override)
    return PriceTable.from_json(resources.files("segmind_proxy").joinpath("data/pricing.json").read_text("utf-8"))
