"""The deployment package stays lean. `make test` runs `sam build` first, so .aws-sam/build is there."""

import os
from pathlib import Path

import pytest

BUILD = Path(__file__).resolve().parents[2] / ".aws-sam" / "build"
pytestmark = pytest.mark.skipif(
    not BUILD.exists() and not os.environ.get("CI"), reason="run `make build` first (make test does)"
)


def size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def test_layer_is_lean_and_leaves_boto3_to_the_runtime():
    layer = BUILD / "CoreLayer" / "python"
    assert (layer / "segmind_proxy" / "data" / "sd35_turbo_txt2img.json").is_file()
    assert not (layer / "boto3").exists() and not (layer / "botocore").exists()
    assert size(layer) < 40 * 1024 * 1024
    native = list((layer / "pydantic_core").glob("*.so"))
    assert native and all("cpython-313-aarch64" in so.name for so in native)


def test_functions_hold_only_their_handler():
    for function in ("ApiFunction", "WorkerFunction", "CreditsProbeFunction"):
        assert sorted(p.name for p in (BUILD / function).iterdir()) == ["app.py"]


def test_layer_is_exactly_the_pinned_packages():
    constraints = BUILD.parents[1] / "layers" / "core" / "constraints.txt"
    pinned = {line.strip() for line in constraints.read_text().splitlines() if line and not line.startswith("#")}
    layer = BUILD / "CoreLayer" / "python"
    built = {p.name.removesuffix(".dist-info").replace("-", "==", 1) for p in layer.glob("*.dist-info")}
    assert built == pinned
