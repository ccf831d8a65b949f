"""Estimated upstream cost of a generation: each model's price from its data file (by size and steps where the file
says so), which an operator may override (`PRICE_TABLE`, read by the composition root)."""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from segmind_proxy.domain.catalog import Catalog, CatalogError, PriceSpec, Role
from segmind_proxy.domain.request import DEFAULT_SLUG, Txt2ImgRequest


def estimate(request: Txt2ImgRequest) -> float:
    """Credits the request's images are expected to cost: what a budget reserves before the upstream call."""
    size = request.size
    megapixels = size[0] * size[1] / 1_000_000 if size is not None else None
    return request.model.price.estimate(megapixels, request.role(Role.STEPS), request.count)


def with_prices(catalog: Catalog, override: str) -> Catalog:
    """`catalog` with the prices of `override` (JSON: model slug -> a model file's `price` object) in place of its
    files' own. The older form, one table of SD 3.5 Turbo's (`reference_steps` and `size_tiers`), still reads as
    that model's. A bad override is a CatalogError naming the fault, at start."""
    if not override.strip():
        return catalog
    try:
        prices = json.loads(override)
        if isinstance(prices, dict) and "size_tiers" in prices:
            prices = {DEFAULT_SLUG: _older_table(prices)}
        checked = {slug: PriceSpec.model_validate_json(json.dumps(price)) for slug, price in prices.items()}
    except (ValueError, AttributeError, ValidationError) as exc:
        raise CatalogError(f"PRICE_TABLE is not a JSON object of model slug -> price: {exc}") from None
    unknown = sorted(slug for slug in checked if catalog.find(slug) is None)
    if unknown:
        raise CatalogError(f"PRICE_TABLE prices models the catalog does not hold: {', '.join(unknown)}")
    return Catalog([model.model_copy(update={"price": checked.get(model.slug, model.price)}) for model in catalog])


def _older_table(table: dict[str, Any]) -> dict[str, Any]:
    tiers = sorted(table["size_tiers"], key=lambda tier: tier["max_megapixels"])
    return {
        "credits_per_image": tiers[0]["credits_per_image"],
        "source": "PRICE_TABLE",
        "size_tiers": tiers,
        "reference_steps": table.get("reference_steps"),
    }
