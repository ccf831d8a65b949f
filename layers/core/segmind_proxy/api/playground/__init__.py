"""The playground: one page (HTML, CSS and JavaScript shipped here as files, no build step) that builds its form
from the catalog the validation uses, and calls the gateway's own routes with the key the user types. Served keyless
under a strict Content-Security-Policy: the page runs only its own same-origin script and style, and shows images
only as `data:` or `blob:` URLs, so it talks to no other origin (see docs/playground.md)."""

from __future__ import annotations

import html
import json
from functools import cache
from importlib import resources
from typing import Any

from segmind_proxy.api.edge import TXT2IMG_PATH, V2_PATH
from segmind_proxy.api.openai_images import GENERATIONS_PATH, extensions
from segmind_proxy.domain.request import default_model

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


def asset(name: str) -> tuple[str, str] | None:
    """(Content-Type, text) of one of the page's files, or None for any other name."""
    if name == CATALOG_ASSET:
        return "application/json", catalog_json()
    if name not in ASSETS:
        return None
    return ASSETS[name], _text(name)


@cache
def catalog_json() -> str:
    """What the form is built from: the very data validation reads (defaults, ranges, lengths, enum lists, sizes)."""
    model = default_model()
    fields = model.fields
    body: dict[str, Any] = {
        "slug": model.slug,
        "defaults": {name: spec.default for name, spec in fields.items() if not spec.required},
        "ranges": {
            name: [min(spec.minimum or 0, spec.random) if spec.random is not None else spec.minimum, spec.maximum]
            for name, spec in fields.items()
            if spec.maximum is not None
        },
        "max_lengths": {name: spec.max_length for name, spec in fields.items() if spec.max_length is not None},
        "enums": {name: list(spec.enum) for name, spec in fields.items() if spec.enum is not None},
        "aspect_ratios": {name: list(size) for name, size in (fields["aspect_ratio"].sizes or {}).items()},
        "routes": {
            "v1": TXT2IMG_PATH.replace("{model}", model.slug),
            "v2": V2_PATH.replace("{model}", model.slug),
            "openai": GENERATIONS_PATH,
            "usage": "/v1/usage",
        },
        "openai": {"model": model.openai_id, "segmind_fields": list(extensions(model))},
    }
    return json.dumps(body)
