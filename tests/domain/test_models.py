import json

import pytest

from segmind_proxy.api.segmind_errors import body
from segmind_proxy.domain.errors import RequestInvalid
from segmind_proxy.domain.request import default_model, load_json_object, parse_request
from tests.support.segmind import SAMPLE

MODEL = default_model()


def parse(body: dict) -> object:
    return parse_request(json.dumps(body).encode())


def error_of(body: object) -> RequestInvalid:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    with pytest.raises(RequestInvalid) as caught:
        parse_request(raw)
    return caught.value


def test_segmind_sample_request_is_accepted_as_sent():
    request = parse(SAMPLE)
    assert request.model_dump() == SAMPLE | {"guidance_scale": 1.0}


def test_defaults_are_segminds_documented_ones():
    request = parse({"prompt": "a fox"})
    assert request.negative_prompt == "low quality, blurry"
    assert (request.steps, request.guidance_scale, request.seed) == (4, 1.0, 98552302)
    assert (request.sampler, request.scheduler, request.aspect_ratio) == ("dpmpp_2m", "sgm_uniform", "custom")
    assert (request.width, request.height, request.batch_size) == (1024, 1024, 1)
    assert (request.image_format, request.image_quality, request.base64) == ("jpeg", 95, True)


@pytest.mark.parametrize(
    ("ratio", "size"), [("1:1", (1024, 1024)), ("16:9", (1344, 768)), ("9:16", (768, 1344)), ("21:9", (1536, 640))]
)
def test_named_aspect_ratio_overrides_width_and_height(ratio, size):
    request = parse({"prompt": "x", "aspect_ratio": ratio, "width": 64, "height": 64})
    assert request.size == size
    payload = request.upstream_payload()
    assert (payload["width"], payload["height"], payload["aspect_ratio"]) == (*size, "custom")


def test_custom_aspect_ratio_uses_width_and_height():
    assert parse({"prompt": "x", "width": 640, "height": 320}).size == (640, 320)


@pytest.mark.parametrize(
    ("field", "low", "high"),
    [
        ("steps", 1, 70),
        ("guidance_scale", 1, 15),
        ("width", 64, 2048),
        ("height", 64, 2048),
        ("batch_size", 1, 10),
        ("image_quality", 10, 100),
    ],
)
def test_ranges_accept_their_bounds_and_refuse_beyond(field, low, high):
    assert getattr(parse({"prompt": "x", field: low}), field) == low
    assert getattr(parse({"prompt": "x", field: high}), field) == high
    for bad in (low - 1, high + 1):
        error = error_of({"prompt": "x", field: bad})
        assert type(error) is RequestInvalid
        assert f"'{field}'" in error.message


@pytest.mark.parametrize("seed", [-2, -4294967295, 4294967296])
def test_a_seed_out_of_range_is_told_the_whole_rule(seed):
    assert parse({"prompt": "x", "seed": -1}).random_seed
    assert parse({"prompt": "x", "seed": 0}).seed == 0 and parse({"prompt": "x", "seed": 4294967295}).seed
    rule = f"'seed': must be -1 (a random seed) or an integer from 0 to 4294967295 (got {seed})"
    assert error_of({"prompt": "x", "seed": seed}).details == [{"field": "seed", "message": rule}]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("steps", "4"),
        ("steps", 4.5),
        ("steps", True),
        ("seed", "1"),
        ("guidance_scale", "1"),
        ("base64", "false"),
        ("base64", 0),
        ("prompt", 42),
        ("width", None),
    ],
)
def test_wrong_types_are_refused_not_coerced(field, value):
    error = error_of({"prompt": "x", field: value})
    assert type(error) is RequestInvalid
    assert f"'{field}'" in error.message


def test_float_guidance_accepts_integers():
    assert parse({"prompt": "x", "guidance_scale": 7}).guidance_scale == 7.0


@pytest.mark.parametrize(
    ("field", "value"),
    [("sampler", "nope"), ("scheduler", "linear"), ("image_format", "gif"), ("aspect_ratio", "7:3")],
)
def test_enum_fields_refuse_unknown_values_and_list_allowed(field, value):
    error = error_of({"prompt": "x", field: value})
    assert f"'{field}'" in error.message
    assert "must be one of" in error.message


def test_every_bad_field_is_named_in_one_answer():
    error = error_of({"prompt": "", "steps": 0, "sampler": "x", "colour": "red", "batch_size": 11})
    fields = {detail["field"] for detail in error.details}
    assert fields == {"prompt", "steps", "sampler", "colour", "batch_size"}
    for name in fields:
        assert name in error.message
    assert body(error)["error"] == error.message


def test_unknown_field_is_named():
    assert "unknown field 'strength'" in error_of({"prompt": "x", "strength": 0.5}).message


def test_missing_prompt_is_named():
    assert "'prompt' is required" in error_of({"steps": 4}).message


def test_blank_and_overlong_prompts_are_refused():
    assert "'prompt'" in error_of({"prompt": "   "}).message
    too_long = "x" * (MODEL.fields["prompt"].max_length + 1)
    assert "'prompt'" in error_of({"prompt": too_long}).message
    assert parse({"prompt": "x" * MODEL.fields["prompt"].max_length})


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"", "empty"),
        (b"   ", "empty"),
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b'"prompt"', "JSON object"),
        (b'{"prompt": "x", "guidance_scale": NaN}', "NaN"),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
def test_bodies_that_are_not_a_json_object(raw, fragment):
    error = error_of(raw)
    assert type(error) is RequestInvalid
    assert fragment in error.message


def test_catalog_is_data_with_the_documented_lists():
    assert "dpmpp_2m" in MODEL.fields["sampler"].enum and "euler" in MODEL.fields["sampler"].enum
    assert "sgm_uniform" in MODEL.fields["scheduler"].enum and "karras" in MODEL.fields["scheduler"].enum
    assert set(MODEL.formats) == {"jpeg", "png", "webp"}


def test_integral_floats_are_integers_as_json_schema_says():
    request = parse({"prompt": "x", "steps": 12.0, "width": 512.0, "seed": 7.0})
    assert (request.steps, request.width, request.seed) == (12, 512, 7)
    assert type(request.steps) is int
    assert "'steps'" in error_of({"prompt": "x", "steps": 12.5}).message


@pytest.mark.parametrize("prompt", ["\u00a0\u2003", "\t\n", "\ufeff "])
def test_unicode_whitespace_only_prompts_are_blank(prompt):
    assert "'prompt'" in error_of({"prompt": prompt}).message


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        (b'{"prompt": "x", "seed": 1, "seed": 2}', "seed"),
        (b'{"prompt": "x", "prompt": "x"}', "prompt"),  # the same value twice is still two answers to one question
        (b'{"prompt": "x", "se\\u0065d": 1, "seed": 1}', "seed"),  # an escape spells the same key
        (b'{"prompt": "x", "width": 512, "seed": 1, "width": 512, "seed": 2}', "width"),
    ],
)
def test_a_key_given_twice_is_refused_naming_it(raw, key):
    error = error_of(raw)
    assert type(error) is RequestInvalid
    assert error.message == f"Duplicate key '{key}' in the JSON body"
    assert error.details == [{"field": key, "message": error.message}]
    assert body(error)["error"] == error.message


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        (b'{"prompt": "x", "steps": {"a": 1, "a": 2}}', "steps.a"),
        (b'{"prompt": "x", "steps": [{"a": 1}, {"b": 1, "b": 1}]}', "steps.1.b"),
        (b'[{"a": {"b": {"c": 1, "c": 1}}}]', "0.a.b.c"),  # found before the body is seen not to be an object
        # The inner duplicate sits in a value the outer one overwrites: the outer one is what can be pointed at.
        (b'{"prompt": "x", "steps": {"a": 1, "a": 2}, "steps": 4}', "steps"),
    ],
)
def test_a_nested_key_given_twice_is_refused_naming_its_path(raw, path):
    assert error_of(raw).message == f"Duplicate key '{path}' in the JSON body"


def test_keys_repeated_only_across_objects_are_not_duplicates():
    raw = b'{"a": {"a": 1}, "b": [{"a": 1}, {"a": 2}], "c": {}}'
    assert load_json_object(raw) == {"a": {"a": 1}, "b": [{"a": 1}, {"a": 2}], "c": {}}
    assert parse_request(b'{"prompt": "x", "seed": 1}').seed == 1


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b'{"prompt": "x", "seed": 1, "seed": 2', "not valid JSON"),  # the JSON is judged whole first
        (b'{"a": {"b": 1, "b": 2}, oops}', "not valid JSON"),
        (b'{"prompt": "x", "seed": 1, "seed": NaN}', "NaN"),
    ],
)
def test_invalid_json_is_reported_as_such_even_with_a_key_given_twice(raw, fragment):
    assert fragment in error_of(raw).message
