"""The model catalog: every Segmind text-to-image model the gateway serves, one data file each
(`data/models/<slug>.json`), checked when loaded. A file holds the model's slug, the page it was read from, every
request field (type, required, default, range or allowed values, length), which fields only change the delivery
(`base64`) rather than the pixels, the fields' roles (so other protocols can map onto them), the output formats, the
price estimate and the page's sample request. Adding a model is adding a file."""

from __future__ import annotations

import math
from enum import StrEnum
from functools import cache
from importlib import resources
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

MODELS_DIRECTORY = "data/models"
SLUG_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,99}$"  # one URL path segment: what /v1/{model} routes


class Role(StrEnum):
    """What a field means, whatever the model calls it: how another protocol (OpenAI's) maps onto the model."""

    PROMPT = "prompt"
    NEGATIVE_PROMPT = "negative_prompt"
    SEED = "seed"
    COUNT = "count"  # images per request: batch_size, samples, ...
    WIDTH = "width"
    HEIGHT = "height"
    ASPECT_RATIO = "aspect_ratio"
    FORMAT = "format"  # the output format: image_format, output_format, ...
    QUALITY = "quality"  # the output's compression quality
    BASE64 = "base64"  # the answer as base64 JSON rather than bytes
    STEPS = "steps"


# The JSON type each role's field must have.
ROLE_TYPES = {
    Role.PROMPT: "string",
    Role.NEGATIVE_PROMPT: "string",
    Role.SEED: "integer",
    Role.COUNT: "integer",
    Role.WIDTH: "integer",
    Role.HEIGHT: "integer",
    Role.ASPECT_RATIO: "string",
    Role.FORMAT: "string",
    Role.QUALITY: "integer",
    Role.BASE64: "boolean",
    Role.STEPS: "integer",
}
PYTHON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
}


class CatalogError(Exception):
    """A model file that cannot be served as written; the message names the file and the fault."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class FieldSpec(_Strict):
    """One request field, as the model's page documents it."""

    type: Literal["string", "integer", "number", "boolean"]
    required: bool = False
    default: Any = None
    minimum: int | float | None = None
    maximum: int | float | None = None
    multiple_of: int | None = Field(None, ge=2)  # an integer's step (a size in multiples of 8)
    enum: tuple[str, ...] | None = None
    min_length: int | None = Field(None, ge=0)
    max_length: int | None = Field(None, ge=1)
    not_blank: bool = False  # a string of spaces is refused too (a prompt)
    role: Role | None = None
    delivery: bool = False  # changes how the answer is delivered, not its pixels: left out of the cache key
    random: int | None = None  # a seed's value that asks for a random seed (outside its range, e.g. -1)
    sizes: dict[str, tuple[int, int]] | None = None  # an aspect ratio's (width, height) per value, where known
    description: str = ""
    note: str = ""  # where the page is silent or contradicts itself: what it says, and the reading chosen

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.required and self.default is not None:
            raise ValueError("a required field has no default")
        if self.enum is not None and self.type != "string":
            raise ValueError("only a string field has allowed values (enum)")
        if self.default is not None:
            self._check_value(self.default, "its default")
        if self.random is not None and (self.type != "integer" or self.role is not Role.SEED):
            raise ValueError("only a seed has a random value")
        if self.sizes is not None and (self.enum is None or not set(self.sizes) <= set(self.enum)):
            raise ValueError("'sizes' names values of the field's enum only")
        return self

    def _check_value(self, value: Any, what: str) -> None:
        kinds = PYTHON_TYPES[self.type]
        if not isinstance(value, kinds) or (self.type != "boolean" and isinstance(value, bool)):
            raise ValueError(f"{what} {value!r} is not of type {self.type}")
        if self.enum is not None and value not in self.enum:
            raise ValueError(f"{what} {value!r} is not one of its allowed values")
        if value == self.random:
            return
        if (self.minimum is not None and value < self.minimum) or (self.maximum is not None and value > self.maximum):
            raise ValueError(f"{what} {value!r} is outside {self.minimum} to {self.maximum}")
        if self.multiple_of is not None and value % self.multiple_of:
            raise ValueError(f"{what} {value!r} is not a multiple of {self.multiple_of}")


class SizeTier(_Strict):
    max_megapixels: float = Field(gt=0)
    credits_per_image: float = Field(gt=0)


class PriceSpec(_Strict):
    """The estimated cost of one image, in Segmind credits (US dollars), which budgets reserve before the call."""

    credits_per_image: float = Field(gt=0)
    source: str = Field(min_length=1)  # what the page says about the price, or where the estimate comes from
    # By output size, ascending: the first tier that holds the image's megapixels sets its price.
    size_tiers: tuple[SizeTier, ...] | None = None
    # Steps beyond these cost proportionally more (the model needs a `steps` role).
    reference_steps: int | None = Field(None, ge=1)

    def per_image(self, megapixels: float | None, steps: int | None) -> float:
        price = self.credits_per_image
        if self.size_tiers and megapixels is not None:
            tiers = sorted(self.size_tiers, key=lambda tier: tier.max_megapixels)
            price = next(
                (t.credits_per_image for t in tiers if megapixels <= t.max_megapixels), tiers[-1].credits_per_image
            )
        if self.reference_steps and steps is not None:
            price *= max(1.0, steps / self.reference_steps)
        return price

    def estimate(self, megapixels: float | None, steps: int | None, count: int) -> float:
        """Rounded up to 1e-6 credits, so estimates never undercount through float noise."""
        return math.ceil(self.per_image(megapixels, steps) * count * 1e6) / 1e6


class ModelSpec(_Strict):
    """A model as its data file describes it."""

    slug: str = Field(pattern=SLUG_PATTERN)
    name: str = Field(min_length=1)
    openai_id: str = Field(pattern=SLUG_PATTERN)  # the id OpenAI's door and /v1/models know it by
    source: str = Field(pattern=r"^https://")  # the model's page the data was read from
    notes: tuple[str, ...] = ()
    fields: dict[str, FieldSpec]
    formats: dict[str, str]  # output format name -> media type
    default_format: str | None = None  # the output format of a model with no format field
    price: PriceSpec
    seconds_per_image: float | None = Field(None, gt=0)  # the page's rough time per image
    sample_request: dict[str, Any]  # the page's own sample, checked against the fields when loaded

    @model_validator(mode="after")
    def _roles(self) -> Self:
        roles: dict[Role, str] = {}
        for name, spec in self.fields.items():
            if spec.role is None:
                continue
            if spec.role in roles:
                raise ValueError(f"fields '{roles[spec.role]}' and '{name}' have the same role {spec.role.value}")
            if spec.type != ROLE_TYPES[spec.role]:
                raise ValueError(f"field '{name}' has role {spec.role.value}, which needs type {ROLE_TYPES[spec.role]}")
            roles[spec.role] = name
        if Role.PROMPT not in roles:
            raise ValueError("no field has the prompt role")
        if (Role.WIDTH in roles) != (Role.HEIGHT in roles):
            raise ValueError("a width role needs a height role, and the other way round")
        format_field = roles.get(Role.FORMAT)
        if format_field is None and self.default_format not in self.formats:
            raise ValueError("a model with no format field names its output format in default_format")
        if format_field is not None and not set(self.fields[format_field].enum or ()) <= set(self.formats):
            raise ValueError(f"every value of '{format_field}' needs its media type in 'formats'")
        if not set(self.formats.values()) <= {"image/jpeg", "image/png", "image/webp"}:
            raise ValueError("formats are image/jpeg, image/png or image/webp: the images the gateway can check")
        if self.price.reference_steps and Role.STEPS not in roles:
            raise ValueError("a price by steps (reference_steps) needs a field with the steps role")
        return self

    def field_of(self, role: Role) -> str | None:
        """The name of the field that has `role`, if any."""
        return next((name for name, spec in self.fields.items() if spec.role is role), None)

    @property
    def output_formats(self) -> dict[str, str]:
        """The formats a request may ask for, by the model's names, with their media types: its format field's
        values, or its one format."""
        field = self.field_of(Role.FORMAT)
        names = self.fields[field].enum or () if field else (self.default_format or "",)
        return {name: self.formats[name] for name in names}

    @property
    def pixel_fields(self) -> tuple[str, ...]:
        """The fields that change the image (the cache key): every field but those of delivery."""
        return tuple(name for name, spec in self.fields.items() if not spec.delivery)


class Catalog:
    """The models, by Segmind's slug and by OpenAI id (each a name the model is asked for by)."""

    def __init__(self, models: list[ModelSpec]) -> None:
        self.models = sorted(models, key=lambda model: model.slug)
        self._by_name: dict[str, ModelSpec] = {}
        for model in self.models:
            for name in (model.slug, model.openai_id):
                other = self._by_name.get(name)
                if other is not None and other is not model:
                    raise CatalogError(f"'{name}' names two models: {other.slug} and {model.slug}")
                self._by_name[name] = model

    def find(self, name: str) -> ModelSpec | None:
        """The model a slug or an OpenAI id names, else None."""
        return self._by_name.get(name)

    def __iter__(self) -> Any:
        return iter(self.models)


def parse_model_file(text: str, name: str) -> ModelSpec:
    """One model file, checked; CatalogError naming the file and every fault otherwise."""
    try:
        spec = ModelSpec.model_validate_json(text)  # JSON's arrays as tuples, its strings as roles
    except ValidationError as exc:
        faults = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'file'}: {error['msg'].removeprefix('Value error, ')}"
            for error in exc.errors(include_url=False)
        )
        raise CatalogError(f"Model file {name} is invalid: {faults}") from None
    if f"{spec.slug}.json" != name.rsplit("/", 1)[-1]:
        raise CatalogError(f"Model file {name} holds '{spec.slug}': name it {spec.slug}.json")
    return spec


@cache
def bundled_catalog() -> Catalog:
    """The models shipped in the package's data folder."""
    folder = resources.files("segmind_proxy").joinpath(MODELS_DIRECTORY)
    files = sorted((entry for entry in folder.iterdir() if entry.name.endswith(".json")), key=lambda e: e.name)
    if not files:
        raise CatalogError(f"No model files in {MODELS_DIRECTORY}")
    return Catalog([parse_model_file(entry.read_text("utf-8"), f"{MODELS_DIRECTORY}/{entry.name}") for entry in files])
