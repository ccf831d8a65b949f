"""A request for one catalog model, validated strictly against that model's data before any credit is spent: the
request model of each model is built from its file (pydantic's `create_model`), and a validated request says what
its fields mean through their roles (prompt, seed, count, size, format...), whatever the model calls them."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
)
from pydantic.fields import FieldInfo

from segmind_proxy.domain.catalog import Catalog, CatalogError, FieldSpec, ModelSpec, Role, bundled_catalog
from segmind_proxy.domain.errors import RequestInvalid
from segmind_proxy.domain.image_formats import FORMAT_OF

# "Not blank" as JSON Schema's (ECMA) \S understands it, so the spec and the validator agree exactly.
NOT_BLANK = "[^\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]"
_NOT_BLANK = re.compile(NOT_BLANK)
REQUEST_CONFIG = ConfigDict(extra="forbid", strict=True, frozen=True)


def _integral_float(value: Any) -> Any:
    """JSON Schema counts 4.0 as an integer; strict mode still refuses "4", true and 4.5."""
    return int(value) if type(value) is float and value.is_integer() else value


JsonInt = Annotated[int, BeforeValidator(_integral_float)]
_TYPES: dict[str, Any] = {"string": str, "integer": JsonInt, "number": float, "boolean": bool}


def _field(spec: FieldSpec) -> tuple[Any, FieldInfo]:
    """One field of a model's request: its type, default and bounds; enums and seeds are checked by validators, so
    that their messages say the whole rule."""
    schema: dict[str, Any] = {}
    bounds: dict[str, Any] = {}
    if spec.enum is not None:
        schema["enum"] = list(spec.enum)
    if spec.not_blank:
        schema["pattern"] = r"\S"
    if spec.random is not None:  # -1 or the range: checked by `_seed_in_range`
        schema |= {"minimum": min(spec.random, spec.minimum or 0), "maximum": spec.maximum}
    else:
        bounds = {"ge": spec.minimum, "le": spec.maximum, "multiple_of": spec.multiple_of}
    default = float(spec.default) if spec.type == "number" and spec.default is not None else spec.default
    info = Field(
        ... if spec.required else default,
        description=spec.description or None,
        min_length=spec.min_length,
        max_length=spec.max_length,
        json_schema_extra=schema or None,
        **{name: value for name, value in bounds.items() if value is not None},
    )
    return _TYPES[spec.type], info


def _not_blank(value: str) -> str:
    if not _NOT_BLANK.search(value):
        raise ValueError("must not be blank")
    return value


def _validators(model: ModelSpec) -> dict[str, Any]:
    """The checks a field's type and bounds cannot state: allowed values, not blank, a seed's random value."""
    fields = model.fields

    def known_value(cls: type, value: str, info: ValidationInfo) -> str:
        allowed = fields[info.field_name].enum or ()
        if value not in allowed:
            raise ValueError(f"must be one of: {', '.join(sorted(allowed))}")
        return value

    def seed_in_range(cls: type, value: int, info: ValidationInfo) -> int:
        spec = fields[info.field_name]
        if value != spec.random and not (spec.minimum or 0) <= value <= (spec.maximum or value):
            raise ValueError(
                f"must be {spec.random} (a random seed) or an integer from {spec.minimum or 0} to {spec.maximum} "
                f"(got {value})"
            )
        return value

    checks: dict[str, tuple[Callable[..., Any], list[str]]] = {
        "known_value": (known_value, [n for n, f in fields.items() if f.enum is not None]),
        "not_blank": (lambda cls, value: _not_blank(value), [n for n, f in fields.items() if f.not_blank]),
        "seed_in_range": (seed_in_range, [n for n, f in fields.items() if f.random is not None]),
    }
    return {name: field_validator(*names)(check) for name, (check, names) in checks.items() if names}


_BUILT: dict[int, tuple[ModelSpec, type[BaseModel]]] = {}  # by the spec's identity (specs hold dicts: unhashable)


def request_model(model: ModelSpec) -> type[BaseModel]:
    """The pydantic model of `model`'s request, built from its data once: strict types, ranges, allowed values and
    lengths, unknown fields refused."""
    built = _BUILT.get(id(model))
    if built is None or built[0] is not model:
        built = _BUILT[id(model)] = (model, _build(model))
    return built[1]


def _build(model: ModelSpec) -> type[BaseModel]:
    return create_model(  # type: ignore[call-overload,no-any-return]
        _class_name(model.slug),
        __config__=REQUEST_CONFIG,
        __doc__=f"The request fields of Segmind's `{model.slug}` ({model.name}), with its defaults.",
        __validators__=_validators(model),
        **{name: _field(spec) for name, spec in model.fields.items()},
    )


def _class_name(slug: str) -> str:
    """`stable-diffusion-3.5-turbo-txt2img` -> `StableDiffusion3_5TurboTxt2imgRequest`."""
    words = re.split(r"[-_]+", slug.replace(".", "_"))
    return "".join(word[:1].upper() + word[1:] for word in words) + "Request"


@dataclass(frozen=True)
class Txt2ImgRequest:
    """A validated request for one model: its fields (defaults applied, `request.steps` reads one by the model's own
    name) and what they mean, by role."""

    model: ModelSpec
    values: BaseModel

    def __getattr__(self, name: str) -> Any:  # a field by the model's name for it
        if name in ("model", "values") or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.values, name)

    def role(self, role: Role, default: Any = None) -> Any:
        """The value of the field with `role`, or `default` if the model has none."""
        name = self.model.field_of(role)
        return default if name is None else getattr(self.values, name)

    @property
    def slug(self) -> str:
        return self.model.slug

    @property
    def prompt(self) -> str:
        return str(self.role(Role.PROMPT))

    @property
    def seed(self) -> int | None:
        return self.role(Role.SEED)

    @property
    def random_seed(self) -> bool:
        """Whether the seed is left to chance (never read from the cache): the model's random value (-1), or no seed
        at all where the model's seed has no default (Segmind then picks one)."""
        name = self.model.field_of(Role.SEED)
        return name is not None and (self.seed is None or self.seed == self.model.fields[name].random)

    @property
    def count(self) -> int:
        """Images asked for: the model's batch field, else one."""
        return int(self.role(Role.COUNT, 1))

    @property
    def image_format(self) -> str:
        return str(self.role(Role.FORMAT, self.model.default_format))

    @property
    def content_type(self) -> str:
        return self.model.formats[self.image_format]

    @property
    def expected_format(self) -> str:
        """The format the images should come in, as image bytes are named (`jpeg` for a model's `jpg`)."""
        return FORMAT_OF.get(self.content_type, self.image_format)

    @property
    def base64(self) -> bool:
        """Whether the client asked for base64 JSON (a model without the field answers bytes, as Segmind does)."""
        return bool(self.role(Role.BASE64, False))

    @property
    def size(self) -> tuple[int, int] | None:
        """Effective width and height: a named aspect ratio of known size overrides width and height; None where the
        model's page does not say what size an aspect ratio makes."""
        ratio = self.role(Role.ASPECT_RATIO)
        sizes = self.model.fields[self.model.field_of(Role.ASPECT_RATIO) or ""].sizes if ratio is not None else None
        if sizes and ratio in sizes:
            return sizes[ratio]
        width, height = self.role(Role.WIDTH), self.role(Role.HEIGHT)
        return (width, height) if width is not None and height is not None else None

    def model_dump(self) -> dict[str, Any]:
        """Every field with a value, defaults applied (an optional field without a default, not given, is left out):
        what jobs keep, and what validates again as the same request."""
        return self.values.model_dump(exclude_none=True)

    def model_copy(self, *, update: dict[str, Any]) -> Txt2ImgRequest:
        """The same request with fields replaced (by the model's names), as pydantic copies: not validated again."""
        return Txt2ImgRequest(self.model, self.values.model_copy(update=update))

    def with_seed(self, seed: int) -> Txt2ImgRequest:
        name = self.model.field_of(Role.SEED)
        assert name is not None, "a model with a seed"
        return self.model_copy(update={name: seed})

    def upstream_payload(self) -> dict[str, Any]:
        """The body sent upstream: explicit values for every field; a named aspect ratio's size sent as width and
        height (with the ratio that means "use them"); base64 always on, so batches come back whole."""
        payload = self.model_dump()
        ratio_field, custom = self.model.field_of(Role.ASPECT_RATIO), _custom_ratio(self.model)
        size = self.size
        if ratio_field and custom is not None and size is not None and self.model.field_of(Role.WIDTH):
            payload |= {ratio_field: custom, self.model.field_of(Role.WIDTH): size[0]}
            payload[self.model.field_of(Role.HEIGHT)] = size[1]
        if (base64_field := self.model.field_of(Role.BASE64)) is not None:
            payload[base64_field] = True
        return payload


def _custom_ratio(model: ModelSpec) -> str | None:
    """The aspect ratio value that means "use width and height" (the one value with no size), if the model has one."""
    name = model.field_of(Role.ASPECT_RATIO)
    spec = model.fields[name] if name else None
    if spec is None or not spec.sizes:
        return None
    unsized = [value for value in spec.enum or () if value not in spec.sizes]
    return unsized[0] if len(unsized) == 1 else None


def validated(model: ModelSpec, data: dict[str, Any]) -> Txt2ImgRequest:
    """`data` as `model`'s request; pydantic's ValidationError if it is not one (`invalid_request` words it)."""
    return Txt2ImgRequest(model, request_model(model).model_validate(data))


def checked(catalog: Catalog) -> Catalog:
    """The catalog, once every model's own sample request (from its page) validates against its fields: data that
    refuses its source's example stops the functions at start, naming the file."""
    for model in catalog:
        try:
            validated(model, model.sample_request)
        except ValidationError as exc:
            refused = invalid_request(exc).message
            raise CatalogError(f"Model file {model.slug}.json refuses its own sample_request: {refused}") from None
    return catalog


def default_model() -> ModelSpec:
    """Stable Diffusion 3.5 Turbo: the model of requests made before the catalog had others (stored jobs)."""
    found = bundled_catalog().find(DEFAULT_SLUG)
    assert found is not None, f"the catalog holds {DEFAULT_SLUG}"
    return found


DEFAULT_SLUG = "stable-diffusion-3.5-turbo-txt2img"


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


def parse_request(body: bytes | str | None, model: ModelSpec | None = None) -> Txt2ImgRequest:
    """Parse a JSON body into `model`'s request (Stable Diffusion 3.5 Turbo's by default), or raise RequestInvalid
    naming every bad field."""
    data = load_json_object(body)
    try:
        return validated(model or default_model(), data)
    except ValidationError as exc:
        raise invalid_request(exc) from None


def invalid_request(exc: ValidationError) -> RequestInvalid:
    """A request's validation errors in words: every bad field named, in one message."""
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    details = [{"field": _field_name(e["loc"]), "message": _describe(e)} for e in errors]
    return RequestInvalid("Invalid request: " + "; ".join(d["message"] for d in details), details=details)
