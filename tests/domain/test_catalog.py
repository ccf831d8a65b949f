"""The model catalog: one data file per model, checked when loaded; a bad file stops the functions at start, naming
itself and its fault."""

import json
import re

import pytest

from segmind_proxy.domain.catalog import Catalog, CatalogError, bundled_catalog, parse_model_file
from segmind_proxy.domain.pricing import estimate, with_prices
from segmind_proxy.domain.request import checked, default_model, validated

SD35 = "stable-diffusion-3.5-turbo-txt2img"


def model_file(**changes: object) -> dict:
    """The SD 3.5 Turbo file as data, changed."""
    data = json.loads(default_model().model_dump_json())
    for path, value in changes.items():
        target = data
        *parents, last = path.split("__")
        for part in parents:
            target = target[part]
        if value is None:
            del target[last]
        else:
            target[last] = value
    return data


def load(data: dict, name: str = f"{SD35}.json"):
    return parse_model_file(json.dumps(data), name)


def test_every_bundled_model_file_loads_and_accepts_its_pages_sample():
    catalog = checked(bundled_catalog())
    assert SD35 in {model.slug for model in catalog}
    for model in catalog:
        assert model.source.startswith("https://") and model.price.source
        assert validated(model, model.sample_request).prompt


@pytest.mark.parametrize(
    ("changes", "fault"),
    [
        ({"price": None}, "price: Field required"),
        ({"price__credits_per_image": 0}, "price.credits_per_image"),
        ({"fields__steps__default": 71}, "fields.steps: its default 71 is outside 1 to 70"),
        ({"fields__image_format__default": "gif"}, "its default 'gif' is not one of its allowed values"),
        ({"fields__negative_prompt__role": "prompt"}, "have the same role prompt"),
        ({"fields__guidance_scale__role": "count"}, "has role count, which needs type integer"),
        ({"fields__prompt__role": None}, "no field has the prompt role"),
        ({"formats__webp": None}, "needs its media type in 'formats'"),
        ({"fields__steps__colour": "red"}, "fields.steps.colour: Extra inputs are not permitted"),
        ({"source": "http://segmind.com"}, "source"),
    ],
)
def test_a_bad_model_file_is_refused_naming_the_file_and_the_fault(changes, fault):
    with pytest.raises(CatalogError) as refused:
        load(model_file(**changes))
    assert refused.value.args[0].startswith(f"Model file {SD35}.json is invalid: ")
    assert fault in refused.value.args[0]


def test_a_file_is_named_after_its_slug():
    with pytest.raises(CatalogError, match=re.escape(f"name it {SD35}.json")):
        load(model_file(), "other.json")


def test_a_sample_request_the_fields_refuse_stops_the_catalog():
    data = model_file(sample_request={"prompt": "x", "steps": 500})
    with pytest.raises(CatalogError, match=re.escape(f"{SD35}.json refuses its own sample_request: ") + ".*'steps'"):
        checked(Catalog([load(data)]))


def test_two_models_cannot_share_a_name():
    twin = load(model_file(slug="twin", openai_id="stable-diffusion-3.5-turbo"), "twin.json")
    with pytest.raises(CatalogError, match=r"'stable-diffusion-3\.5-turbo' names two models"):
        Catalog([default_model(), twin])


def test_prices_come_from_the_file_and_the_operator_can_override_them():
    request = validated(default_model(), {"prompt": "x", "width": 512, "height": 512, "steps": 8, "batch_size": 2})
    assert estimate(request) == pytest.approx(0.004 * 2 * 2)  # the 0.26 MP tier, twice the reference steps, 2 images
    override = json.dumps({SD35: {"credits_per_image": 0.5, "source": "negotiated"}})
    cheaper = with_prices(bundled_catalog(), override).find(SD35)
    assert estimate(validated(cheaper, {"prompt": "x", "batch_size": 2})) == pytest.approx(1.0)
    older = json.dumps({"reference_steps": 4, "size_tiers": [{"max_megapixels": 9, "credits_per_image": 0.1}]})
    assert estimate(validated(with_prices(bundled_catalog(), older).find(SD35), {"prompt": "x"})) == pytest.approx(0.1)
    for bad, says in (("[1]", "not a JSON object"), ('{"nope": {}}', "not a JSON object"), ("{", "not a JSON object")):
        with pytest.raises(CatalogError, match=says):
            with_prices(bundled_catalog(), bad)
    with pytest.raises(CatalogError, match="does not hold: nope"):
        with_prices(bundled_catalog(), json.dumps({"nope": {"credits_per_image": 1, "source": "x"}}))
