import pytest

from segmind_proxy.domain.cache_key import cache_key, pixel_fields
from segmind_proxy.domain.request import default_model, validated

BASE = {"prompt": "a lighthouse at dusk"}


def key(**fields: object) -> str:
    return cache_key(validated(default_model(), {**BASE, **fields}))


def test_defaults_explicit_or_omitted_give_the_same_key():
    explicit = key(negative_prompt="low quality, blurry", steps=4, guidance_scale=1, seed=98552302, width=1024)
    assert explicit == key()


def test_delivery_fields_do_not_change_the_key():
    assert key(base64=True) == key(base64=False)


def test_integer_and_float_guidance_are_the_same_pixels():
    assert key(guidance_scale=3) == key(guidance_scale=3.0)


def test_aspect_ratio_keys_by_effective_size():
    assert key(aspect_ratio="16:9") == key(width=1344, height=768)
    assert key(aspect_ratio="16:9", width=64) == key(aspect_ratio="16:9", width=2048)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("prompt", "a lighthouse at dawn"),
        ("negative_prompt", "text"),
        ("steps", 5),
        ("guidance_scale", 1.5),
        ("seed", 1),
        ("sampler", "euler"),
        ("scheduler", "karras"),
        ("width", 1016),
        ("height", 1016),
        ("batch_size", 2),
        ("image_format", "png"),
        ("image_quality", 94),
    ],
)
def test_every_pixel_field_changes_the_key(field, value):
    assert key(**{field: value}) != key()


def test_random_seed_request_keys_by_the_seed_used():
    random = validated(default_model(), {**BASE, "seed": -1})
    assert cache_key(random, seed=1234) == key(seed=1234)


def test_key_is_a_sha256_hex_digest():
    digest = key()
    assert len(digest) == 64 and int(digest, 16) >= 0


def test_every_field_sent_upstream_is_keyed_but_delivery_and_the_resolved_ratio():
    # A field added to the request model changes what Segmind draws unless shown otherwise: it must be keyed.
    request = validated(default_model(), {"prompt": "p"})
    not_keyed = {"base64", "aspect_ratio"}  # delivery only; the ratio is keyed as the width and height it gives
    assert set(request.upstream_payload()) - not_keyed == set(pixel_fields(request))
