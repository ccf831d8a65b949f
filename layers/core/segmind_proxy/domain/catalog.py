"""The upstream model's defaults, ranges and enum lists, loaded from data so they can be corrected without code changes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any


@dataclass(frozen=True)
class ModelCatalog:
    slug: str
    defaults: dict[str, Any]
    ranges: dict[str, tuple[float, float]]
    max_lengths: dict[str, int]
    samplers: frozenset[str]
    schedulers: frozenset[str]
    image_formats: dict[str, str]  # format name -> Content-Type
    aspect_ratios: dict[str, tuple[int, int]]  # name -> (width, height)

    def bounds(self, field: str) -> tuple[Any, Any]:
        low, high = self.ranges[field]
        return low, high


@cache
def sd35_turbo() -> ModelCatalog:
    raw = json.loads(resources.files("segmind_proxy").joinpath("data/sd35_turbo_txt2img.json").read_text("utf-8"))
    return ModelCatalog(
        slug=raw["slug"],
        defaults=raw["defaults"],
        ranges={name: (low, high) for name, (low, high) in raw["ranges"].items()},
        max_lengths=raw["max_lengths"],
        samplers=frozenset(raw["samplers"]),
        schedulers=frozenset(raw["schedulers"]),
        image_formats=raw["image_formats"],
        aspect_ratios={name: (w, h) for name, (w, h) in raw["aspect_ratios"].items()},
    )
