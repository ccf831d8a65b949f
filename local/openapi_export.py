"""`make openapi`: writes docs/openapi.json from the code (Powertools), and docs/models.md from the model catalog, so\nneither drifts from the code (a test fails when they differ)."""

from __future__ import annotations

import json
import sys

from . import models_doc
from .template import ROOT

SPEC_PATH = ROOT / "docs" / "openapi.json"


def generate() -> str:
    sys.path.insert(0, str(ROOT))
    from functions.api.app import openapi_spec

    return json.dumps(json.loads(openapi_spec()), indent=2, sort_keys=True) + "\n"


def main() -> None:
    SPEC_PATH.parent.mkdir(exist_ok=True)
    SPEC_PATH.write_text(generate())
    print(f"wrote {SPEC_PATH.relative_to(ROOT)}")
    models_doc.main()


if __name__ == "__main__":
    main()
