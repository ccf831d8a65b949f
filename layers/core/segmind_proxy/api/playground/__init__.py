"""The playground: one page (HTML, CSS and JavaScript shipped here as files, no build step) that builds its form
for each model from the catalog the validation uses, and calls the gateway's own routes with the key the user types. Served keyless
under a strict Content-Security-Policy: the page runs only its own same-origin script and style, and shows images
only as `data:` or `blob:` URLs, so it talks to no other origin (see docs/playground.md)."""

from __future__ import annotations

import html
import json
from functools import cache
from importlib import resources
from typing import Any

from segmind_proxy.api.edge import TXT2IMG_PATH, V2_PATH
from segmind_proxy.api.openai_images import GENERATIONS_PATH, MODELS_PATH, OPENAI_PARAMS, openai_param
from segmind_proxy.domain.catalog import Catalog, ModelSpec, Role
from segmind_proxy.domain.image_formats import FORMAT_OF
from segmind_proxy.domain.request import DEFAULT_SLUG

PAGE_PATH = "/playground"
# The page's own files, by the name their route serves them under.
ASSETS: dict[str, str] = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
CATALOG_ASSET = "catalog.json"

# Only this origin's script and style; images as data: (base64 answers) or blob: (fetched bytes); requests to this
# origin only. Presigned URLs (S3's origin, unknown in advance) are never loaded by the page: it shows them as links.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@cache
def _text(name: str) -> str:
    return resources.files(__name__).joinpath(name).read_text("utf-8")


def page() -> str:
    return _text("index.html")


def landing(prefix: str) -> str:
    """The landing page, its links absolute under `prefix` (the stage's path, see `proxy_events.path_prefix`): a
    stage's root opened without its slash (`/prod`) would otherwise send relative links to the host's root."""
    return _text("landing.html").replace("{prefix}", html.escape(prefix, quote=True))


def asset(name: str, catalog: Catalog) -> tuple[str, str] | None:
    """(Content-Type, text) of one of the page's files, or None for any other name."""
    if name == CATALOG_ASSET:
        return "application/json", catalog_json(catalog)
    if name not in ASSETS:
        return None
    return ASSETS[name], _text(name)


def catalog_json(catalog: Catalog) -> str:
    """What the form is built from: every model, with the very data validation reads (types, defaults, ranges,
    lengths, enum lists, sizes, roles), and how OpenAI's door names each field."""
    body = {
        "default": DEFAULT_SLUG,
        "routes": {"openai": GENERATIONS_PATH, "usage": "/v1/usage", "models": MODELS_PATH},
        "models": [_model(model) for model in catalog],
    }
    return json.dumps(body)


def _model(model: ModelSpec) -> dict[str, Any]:
    # Delivery fields (`base64`) are the page's to set per route, not the user's.
    shown = {name: spec for name, spec in model.fields.items() if not spec.delivery}
    return {
        "slug": model.slug,
        "name": model.name,
        "openai_id": model.openai_id,
        "source": model.source,
        "routes": {"v1": TXT2IMG_PATH.replace("{model}", model.slug), "v2": V2_PATH.replace("{model}", model.slug)},
        "fields": [
            {"name": name} | spec.model_dump(mode="json", exclude={"note", "delivery"}, exclude_none=True)
            for name, spec in shown.items()
        ],
        "sample": model.sample_request,  # where a required field with no default starts
        "base64": model.field_of(Role.BASE64),
        "openai": {
            # The OpenAI parameter of each field set through one (`size`, `n`...); the others go by their own name.
            "params": {name: openai_param(model, name) for name, spec in shown.items() if spec.role in OPENAI_PARAMS},
            "formats": {name: FORMAT_OF[media] for name, media in model.output_formats.items()},
        },
    }
