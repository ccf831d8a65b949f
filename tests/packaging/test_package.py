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
    assert (layer / "segmind_proxy" / "data" / "models" / "stable-diffusion-3.5-turbo-txt2img.json").is_file()
    assert not (layer / "boto3").exists() and not (layer / "botocore").exists()
    # The C2PA library (its native code) and cryptography (the chain's checks) mark images: about 37 MB of their own,
    # within Lambda's 250 MB for a function and its layers; all the rest stays within the 40 MiB it always had.
    marking = sum(
        size(path) for path in layer.iterdir() if path.name.startswith(("c2pa", "cryptography", "cffi", "_cffi"))
    )
    assert size(layer) - marking < 40 * 1024 * 1024
    assert size(layer) < 64 * 1024 * 1024
    native = list((layer / "pydantic_core").glob("*.so"))
    assert native and all("cpython-313-aarch64" in so.name for so in native)


FUNCTIONS = ("ApiFunction", "WorkerFunction", "CreditsProbeFunction", "KeyAuthorizerFunction")
# The first bytes of every CPython 3.13 .pyc (importlib.util.MAGIC_NUMBER there), then its flags: 1 is hash-based
# and unchecked, used without comparing the source's timestamp (which a zip archive rounds).
PYTHON_313_MAGIC = (3571).to_bytes(2, "little") + b"\r\n"
UNCHECKED_HASH = 1


def test_functions_hold_only_their_handler():
    for function in FUNCTIONS:
        held = sorted(str(p.relative_to(BUILD / function)) for p in (BUILD / function).rglob("*") if p.is_file())
        assert held == ["__pycache__/app.cpython-313.pyc", "app.py"]


def test_every_module_ships_as_python_313_bytecode():
    """Lambda's file system is read-only: a module without bytecode would be compiled on every cold start."""
    sources = [p for root in ("CoreLayer", *FUNCTIONS) for p in (BUILD / root).rglob("*.py")]
    assert len(sources) > 300  # the layer's dependencies as well as ours
    for source in sources:
        compiled = source.parent / "__pycache__" / f"{source.stem}.cpython-313.pyc"
        header = compiled.read_bytes()[:8]
        assert header[:4] == PYTHON_313_MAGIC, source
        assert int.from_bytes(header[4:8], "little") == UNCHECKED_HASH, source


def test_layer_is_exactly_the_pinned_packages():
    constraints = BUILD.parents[1] / "layers" / "core" / "constraints.txt"
    pinned = {line.strip() for line in constraints.read_text().splitlines() if line and not line.startswith("#")}
    layer = BUILD / "CoreLayer" / "python"
    built = {p.name.removesuffix(".dist-info").replace("-", "==", 1) for p in layer.glob("*.dist-info")}
    assert built == pinned
