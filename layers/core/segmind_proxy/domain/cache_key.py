"""Cache keys: SHA-256 of the model's slug and a canonical JSON of every field that changes the pixels."""

from __future__ import annotations

import hashlib
import json

from segmind_proxy.domain.catalog import Role
from segmind_proxy.domain.request import Txt2ImgRequest


def pixel_fields(request: Txt2ImgRequest, seed: int | None = None) -> dict[str, object]:
    """Every field that changes the image, after defaults are applied. A named aspect ratio of known size counts as
    the width and height it makes (so `16:9` and 1344x768 are the same pixels); numbers count as numbers (3 and
    3.0 alike); fields of delivery (`base64`) are not pixels."""
    model, values = request.model, request.model_dump()
    fields = {name: values[name] for name in model.pixel_fields if name in values}
    for name in fields:
        if model.fields[name].type == "number":
            fields[name] = float(fields[name])  # type: ignore[arg-type]
    width, height, ratio = (model.field_of(role) for role in (Role.WIDTH, Role.HEIGHT, Role.ASPECT_RATIO))
    if request.size is not None and width and height:
        fields[width], fields[height] = request.size
        if ratio:
            del fields[ratio]
    if seed is not None and (seed_field := model.field_of(Role.SEED)) is not None:
        fields[seed_field] = seed
    return fields


def cache_key(request: Txt2ImgRequest, *, seed: int | None = None) -> str:
    """Hex digest; pass `seed` to key a random-seed request by the seed the upstream actually used."""
    canonical = json.dumps(pixel_fields(request, seed), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{request.slug}\n{canonical}".encode()).hexdigest()
