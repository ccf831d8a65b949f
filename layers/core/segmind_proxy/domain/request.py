"""The Segmind v1 txt2img request, validated strictly against the catalog before any credit is spent."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from segmind_proxy.domain.catalog import sd35_turbo
from segmind_proxy.domain.errors import RequestInvalid

CATALOG = sd35_turbo()
_D = CATALOG.defaults
# Enum-like string fields and the values each accepts (all from the catalog data).
ALLOWED_VALUES: dict[str, frozenset[str]] = {
    "sampler": CATALOG.samplers,
    "scheduler": CATALOG.schedulers,
    "image_format": frozenset(CATALOG.image_formats),
    "aspect_ratio": frozenset({"custom", *CATALOG.aspect_ratios}),
}


# "Not blank" as JSON Schema's (ECMA) \S understands it, so the spec and the validator agree exactly.
NOT_BLANK = "[^\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]"
_NOT_BLANK = re.compile(NOT_BLANK)


def _integral_float(value: Any) -> Any:
    """JSON Schema counts 4.0 as an integer; strict mode still refuses "4", true and 4.5."""
    return int(value) if type(value) is float and value.is_integer() else value


JsonInt = Annotated[int, BeforeValidator(_integral_float)]


def _range(field: str) -> dict[str, Any]:
    low, high = CATALOG.bounds(field)
    return {"ge": low, "le": high}


class Txt2ImgRequest(BaseModel):
    """All 14 request fields of Segmind's `stable-diffusion-3.5-turbo-txt2img`, with its defaults."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    prompt: str = Field(min_length=1, max_length=CATALOG.max_lengths["prompt"], json_schema_extra={"pattern": r"\S"})
    negative_prompt: str = Field(_D["negative_prompt"], max_length=CATALOG.max_lengths["negative_prompt"])
    steps: JsonInt = Field(_D["steps"], **_range("steps"))
    guidance_scale: float = Field(_D["guidance_scale"], **_range("guidance_scale"))
    seed: JsonInt = Field(
        _D["seed"],
        description="-1 asks for a random seed (never read from cache)",
        # The bounds for the spec; the validator below checks them, so that its message says the whole rule.
        json_schema_extra={"minimum": CATALOG.bounds("seed")[0], "maximum": CATALOG.bounds("seed")[1]},
    )
    sampler: str = Field(_D["sampler"], json_schema_extra={"enum": sorted(ALLOWED_VALUES["sampler"])})
    scheduler: str = Field(_D["scheduler"], json_schema_extra={"enum": sorted(ALLOWED_VALUES["scheduler"])})
    width: JsonInt = Field(_D["width"], **_range("width"))
    height: JsonInt = Field(_D["height"], **_range("height"))
    aspect_ratio: str = Field(
        _D["aspect_ratio"],
        description="'custom' uses width and height; a named ratio sets a fixed size",
        json_schema_extra={"enum": ["custom", *CATALOG.aspect_ratios]},
    )
    batch_size: JsonInt = Field(_D["batch_size"], **_range("batch_size"))
    image_format: str = Field(_D["image_format"], json_schema_extra={"enum": list(CATALOG.image_formats)})
    image_quality: JsonInt = Field(_D["image_quality"], **_range("image_quality"))
    base64: bool = Field(_D["base64"], description="true: JSON with base64 image(s); false: the image bytes")

    @field_validator("prompt")
    @classmethod
    def _prompt_not_blank(cls, value: str) -> str:
        if not _NOT_BLANK.search(value):
            raise ValueError("must not be blank")
        return value

    @field_validator(*ALLOWED_VALUES)
    @classmethod
    def _known_value(cls, value: str, info: ValidationInfo) -> str:
        allowed = ALLOWED_VALUES[info.field_name]
        if value not in allowed:
            raise ValueError(f"must be one of: {', '.join(sorted(allowed))}")
        return value

    @field_validator("seed")
    @classmethod
    def _seed_in_range(cls, value: int) -> int:
        random, highest = CATALOG.bounds("seed")
        if value != random and not 0 <= value <= highest:
            raise ValueError(f"must be {random} (a random seed) or an integer from 0 to {highest} (got {value})")
        return value

    @property
    def size(self) -> tuple[int, int]:
        """Effective width and height: a named aspect ratio overrides width and height."""
        return CATALOG.aspect_ratios.get(self.aspect_ratio, (self.width, self.height))

    @property
    def content_type(self) -> str:
        return CATALOG.image_formats[self.image_format]

    @property
    def random_seed(self) -> bool:
        return self.seed == -1

    def upstream_payload(self) -> dict[str, Any]:
        """The body sent upstream: explicit values for every field, sizes resolved, base64 always on so batches come back whole."""
        width, height = self.size
        return {**self.model_dump(), "width": width, "height": height, "aspect_ratio": "custom", "base64": True}


def _field_name(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "body"


def _describe(error: dict[str, Any]) -> str:
    field = _field_name(error["loc"])
    if error["type"] == "extra_forbidden":
        return f"unknown field '{field}'"
    if error["type"] == "missing":
        return f"'{field}' is required"
    message = error["msg"].removeprefix("Value error, ")
    return f"'{field}': {message}"


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def _first_repeated(pairs: list[tuple[str, Any]]) -> str:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            return key
        seen.add(key)
    raise AssertionError("called only for an object with a repeated key")


def _paths_from(root: Any, targets: set[int]) -> dict[int, str]:
    """The dotted path (as validation errors name fields) to each object of `targets` (by id) still in the tree.
    Iterative: the tree may be nested as deeply as the JSON decoder allows."""
    found: dict[int, str] = {}
    stack: list[tuple[Any, str]] = [(root, "")]
    while stack and len(found) < len(targets):
        node, path = stack.pop()
        if id(node) in targets:
            found[id(node)] = path
        children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        stack.extend((child, f"{path}.{key}" if path else str(key)) for key, child in children)
    return found


def _duplicate_key(root: Any, repeats: list[tuple[dict[str, Any], str]]) -> str:
    """The path of the first repeated key found. An object whose repeat lies in a value that a repeat further out
    overwrote is no longer in the tree: that outer repeat is named instead (its object closes later)."""
    paths = _paths_from(root, {id(obj) for obj, _ in repeats})
    for obj, key in repeats:
        if id(obj) in paths:
            return f"{paths[id(obj)]}.{key}" if paths[id(obj)] else key
    return repeats[0][1]


def load_json_object(body: bytes | str | None) -> dict[str, Any]:
    """A request body as a JSON object, or RequestInvalid. A key given twice, at any depth, is refused: the JSON RFC
    leaves its meaning open and `json.loads` would silently keep the last value; a gateway in front of paid calls
    never guesses."""
    if body is None or (body.strip() if isinstance(body, (bytes, str)) else body) in (b"", ""):
        raise RequestInvalid("Request body is empty: send a JSON object with at least 'prompt'")
    # Repeats are noted, not raised, while decoding, so a body that is also not valid JSON is reported as that.
    repeats: list[tuple[dict[str, Any], str]] = []  # holding each object keeps its id unique until the paths are found

    def as_dict(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(pairs)
        if len(obj) < len(pairs):
            repeats.append((obj, _first_repeated(pairs)))
        return obj

    try:
        data = json.loads(body, parse_constant=_reject_constant, object_pairs_hook=as_dict)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestInvalid(f"Request body is not valid JSON: {exc}") from None
    except RecursionError:  # deep nesting fits in a small body; no Segmind field nests at all
        raise RequestInvalid("Request body is not valid JSON: nested too deeply") from None
    if repeats:
        key = _duplicate_key(data, repeats)
        message = f"Duplicate key '{key}' in the JSON body"
        raise RequestInvalid(message, details=[{"field": key, "message": message}])
    if not isinstance(data, dict):
        raise RequestInvalid("Request body must be a JSON object")
    return data


def parse_request(body: bytes | str | None) -> Txt2ImgRequest:
    """Parse a JSON body into a request, or raise RequestInvalid naming every bad field."""
    data = load_json_object(body)
    try:
        return Txt2ImgRequest.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        details = [{"field": _field_name(e["loc"]), "message": _describe(e)} for e in errors]
        raise RequestInvalid("Invalid request: " + "; ".join(d["message"] for d in details), details=details) from None
