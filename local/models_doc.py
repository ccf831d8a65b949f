"""`make openapi` also writes docs/models.md from the model catalog: every model, its page, price and fields, so the
reference never drifts from the data (a test fails when they differ)."""

from __future__ import annotations

from typing import Any

from segmind_proxy.domain.catalog import FieldSpec, ModelSpec, bundled_catalog

from .template import ROOT

MODELS_PATH = ROOT / "docs" / "models.md"

HEAD = """# The models

Generated from the model files (`layers/core/segmind_proxy/data/models/<slug>.json`) by `make openapi`; a test
fails when this page and the files differ. Each model is served at `POST /v1/<slug>` and `POST /v2/<slug>`
(Segmind's protocol, `x-api-key`), and by its OpenAI id at `POST /v1/images/generations` (`Authorization: Bearer`),
where OpenAI's parameters reach its fields through their roles (see [api.md](api.md#openais-front-door)).
Every field, default and range below comes from the model's page on Segmind's site; where the page is silent or
contradicts itself, the field's note says what it says and the reading taken. Prices are estimates in Segmind
credits (US dollars), which budgets reserve before the call.

| model | slug (Segmind's routes) | OpenAI id | price per image | time per image | page |
|---|---|---|---|---|---|
"""

ADDING = """
## Adding a model

Add one file, `layers/core/segmind_proxy/data/models/<slug>.json`, named after the model's slug on Segmind, and
redeploy: no code changes. The file holds the model's `slug`, `name`, `openai_id`, the `source` page read, `notes`,
every request field (`type`, `required`, `default`, `minimum`, `maximum`, `multiple_of`, `enum`, `min_length`,
`max_length`, and the field's `role`: `prompt`, `negative_prompt`, `seed`, `count`, `width`, `height`,
`aspect_ratio`, `format`, `quality`, `base64` or `steps`; `delivery: true` for a field that changes the answer's
form, not its pixels; a seed's `random` value; an aspect ratio's `sizes`), the output `formats` (name -> media
type, or `default_format` for a model without a format field), the `price` (`credits_per_image`, its `source`,
optional `size_tiers` and `reference_steps`), `seconds_per_image`, and the page's own `sample_request`. The file is
checked when the functions start: a field's default outside its range, two fields with one role, a missing price,
or a sample its own fields refuse stops them, naming the file. Then run `make openapi` to refresh the spec and
this page.
"""


def _allowed(spec: FieldSpec) -> str:
    if spec.enum is not None:
        return ", ".join(f"`{value}`" for value in spec.enum)
    parts = []
    if spec.random is not None:
        parts.append(f"`{spec.random}` (random) or")
    if spec.minimum is not None or spec.maximum is not None:
        parts.append(f"{_number(spec.minimum)} to {_number(spec.maximum)}")
    if spec.multiple_of:
        parts.append(f"in multiples of {spec.multiple_of}")
    if spec.max_length:
        parts.append(f"up to {spec.max_length} characters")
    return " ".join(parts)


def _number(value: Any) -> str:
    return "…" if value is None else f"{value:,}" if isinstance(value, int) and abs(value) >= 10_000 else str(value)


def _default(spec: FieldSpec) -> str:
    if spec.required:
        return "**required**"
    return (
        ""
        if spec.default is None
        else f"`{str(spec.default).lower() if isinstance(spec.default, bool) else spec.default}`"
    )


def _model(model: ModelSpec) -> str:
    lines = [f"## {model.name}", "", f"`{model.slug}` · OpenAI id `{model.openai_id}` · from <{model.source}>", ""]
    lines += [f"- {note}" for note in model.notes]
    lines += [f"- Price: {model.price.credits_per_image} credits an image. {model.price.source}", ""]
    lines += ["| field | type | default | allowed | role | note |", "|---|---|---|---|---|---|"]
    for name, spec in model.fields.items():
        role = f"{spec.role.value}{' (delivery)' if spec.delivery else ''}" if spec.role else ""
        note = spec.note.replace("|", "\\|")
        lines.append(f"| `{name}` | {spec.type} | {_default(spec)} | {_allowed(spec)} | {role} | {note} |")
    return "\n".join(lines) + "\n"


def generate() -> str:
    models = list(bundled_catalog())
    rows = "".join(
        f"| {m.name} | `{m.slug}` | `{m.openai_id}` | {m.price.credits_per_image} | "
        f"{f'~{m.seconds_per_image} s' if m.seconds_per_image else 'not shown'} | <{m.source}> |\n"
        for m in models
    )
    return HEAD + rows + ADDING + "".join(f"\n{_model(model)}" for model in models)


def main() -> None:
    MODELS_PATH.write_text(generate())
    print(f"wrote {MODELS_PATH.relative_to(ROOT)}")
