"""docs/configuration.md documents every setting, template parameter and local stack variable, the README shows the
two commands, and the layer ships what pyproject declares."""

import re
from pathlib import Path

from local.stack import LocalConfig
from local.template import load_template
from segmind_proxy.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
CONFIGURATION = (ROOT / "docs" / "configuration.md").read_text()


TABLE_ROWS = [line for line in CONFIGURATION.splitlines() if line.startswith("| `")]


def documented(name: str) -> bool:
    """Named in the first column of a table row of docs/configuration.md."""
    return any(f"`{name}`" in row.split("|")[1] for row in TABLE_ROWS)


def test_every_setting_is_documented():
    missing = [f.alias for f in Settings.model_fields.values() if not documented(f.alias)]
    assert missing == []


def test_every_template_parameter_is_documented():
    missing = [name for name in load_template()["Parameters"] if not documented(name)]
    assert missing == []


def test_every_function_environment_variable_is_documented():
    template = load_template()
    names = set(template["Globals"]["Function"]["Environment"]["Variables"])
    for resource in template["Resources"].values():
        names |= set(resource.get("Properties", {}).get("Environment", {}).get("Variables", {}))
    assert sorted(n for n in names if not documented(n)) == []


def test_every_local_stack_variable_is_documented():
    source = (ROOT / "local" / "stack.py").read_text()
    names = set(re.findall(r'env\.get\("([A-Z_]+)"', source))
    assert len(names) == len(LocalConfig.__dataclass_fields__) - 1  # stage comes from the template
    assert sorted(n for n in names if not documented(n)) == []


def test_readme_shows_the_two_commands():
    assert "make dev" in README and "make test" in README


def test_layer_requirements_match_pyproject():
    pyproject = (ROOT / "pyproject.toml").read_text()
    for line in (ROOT / "layers/core/requirements.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            assert f'"{line}"' in pyproject, f"{line} differs between the layer and pyproject.toml"


def test_queue_visibility_covers_six_worker_timeouts():
    parameters = load_template()["Parameters"]
    assert parameters["QueueVisibilityTimeoutSeconds"]["Default"] >= 6 * parameters["WorkerTimeoutSeconds"]["Default"]
    assert parameters["QueueVisibilityTimeoutSeconds"]["MinValue"] >= 6 * parameters["WorkerTimeoutSeconds"]["MinValue"]
