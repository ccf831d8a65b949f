"""Cache keys: SHA-256 of the model slug and a canonical JSON of every field that changes the pixels."""

from __future__ import annotations

import hashlib
import json

from segmind_proxy.domain.request import CATALOG, Txt2ImgRequest


def pixel_fields(request: Txt2ImgRequest, seed: int | None = None) -> dict[str, object]:
    """Every field that changes the image, after defaults and aspect ratio are applied. `base64` is delivery, not pixels."""
    width, height = request.size
    return {
        "prompt": request.prompt,
        "negative_prompt": request.negative_prompt,
        "steps": request.steps,
        "guidance_scale": float(request.guidance_scale),
        "seed": request.seed if seed is None else seed,
        "sampler": request.sampler,
        "scheduler": request.scheduler,
        "width": width,
        "height": height,
        "batch_size": request.batch_size,
        "image_format": request.image_format,
        "image_quality": request.image_quality,
    }


def cache_key(request: Txt2ImgRequest, *, seed: int | None = None, slug: str = CATALOG.slug) -> str:
    """Hex digest; pass `seed` to key a random-seed request by the seed the upstream actually used."""
    canonical = json.dumps(pixel_fields(request, seed), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{slug}\n{canonical}".encode()).hexdigest()
