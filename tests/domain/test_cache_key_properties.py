"""Property tests of the cache key: equal for equivalent requests, different for any pixel-affecting change."""

from hypothesis import given, settings
from hypothesis import strategies as st

from segmind_proxy.domain.cache_key import cache_key
from segmind_proxy.domain.request import default_model, validated

MODEL = default_model()


def low_high(field: str) -> tuple[int, int]:
    return int(MODEL.fields[field].minimum), int(MODEL.fields[field].maximum)


def allowed(field: str) -> list[str]:
    return sorted(MODEL.fields[field].enum)


FIELDS = {
    "prompt": st.text(min_size=1, max_size=50).filter(lambda s: s.strip()),
    "negative_prompt": st.text(max_size=30),
    "steps": st.integers(*low_high("steps")),
    "guidance_scale": st.integers(1, 15) | st.floats(1, 15, allow_nan=False),
    "seed": st.integers(0, 2**32 - 1),
    "sampler": st.sampled_from(allowed("sampler")),
    "scheduler": st.sampled_from(allowed("scheduler")),
    "width": st.integers(64, 2048),
    "height": st.integers(64, 2048),
    "batch_size": st.integers(1, 10),
    "image_format": st.sampled_from(allowed("image_format")),
    "image_quality": st.integers(10, 100),
}
requests = st.fixed_dictionaries(FIELDS)


def key(fields):
    return cache_key(validated(MODEL, fields))


@settings(max_examples=200, deadline=None)
@given(requests, st.booleans())
def test_equivalent_requests_share_a_key(fields, as_base64):
    explicit = fields | {"aspect_ratio": "custom", "base64": as_base64}
    assert key(fields) == key(explicit)  # defaults spelled out or not, delivery mode ignored
    if isinstance(fields["guidance_scale"], int):
        assert key(fields) == key(fields | {"guidance_scale": float(fields["guidance_scale"])})
    reordered = dict(reversed(list(fields.items())))
    assert key(fields) == key(reordered)


def _changed(field, value, data):
    if isinstance(value, str) and MODEL.fields[field].enum is not None:
        return data.draw(st.sampled_from(sorted(set(MODEL.fields[field].enum) - {value})))
    if isinstance(value, str):
        return value + data.draw(st.text(min_size=1, max_size=5))
    if field == "guidance_scale":
        return data.draw(st.floats(1, 15, allow_nan=False).filter(lambda v: v != value))
    low, high = (0, 2**32 - 1) if field == "seed" else low_high(field)
    return data.draw(st.integers(low, high).filter(lambda v: v != value))


@settings(max_examples=300, deadline=None)
@given(requests, st.sampled_from(sorted(FIELDS)), st.data())
def test_any_pixel_affecting_change_changes_the_key(fields, field, data):
    changed = fields | {field: _changed(field, fields[field], data)}
    assert key(changed) != key(fields)


@settings(max_examples=100, deadline=None)
@given(requests, st.sampled_from(sorted(MODEL.fields["aspect_ratio"].sizes)))
def test_named_ratio_and_its_size_share_a_key(fields, ratio):
    width, height = MODEL.fields["aspect_ratio"].sizes[ratio]
    assert key(fields | {"aspect_ratio": ratio}) == key(fields | {"width": width, "height": height})
