"""`make bench`'s provenance section: the figures it derives (bytes added, on minus off), the layer sizes it counts
without what the Core layer drops, and the section as docs/benchmarks.md shows it. No stack, no signing."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from bench import provenance
from bench.provenance import FORMATS, KMS, LAYER_DROPS, LOCAL, OFF, ON, VARIANTS, XMP, added, package_size, summary

ROOT = Path(__file__).resolve().parents[2]


def test_bytes_added_are_absolute_and_a_percentage_of_the_image():
    assert added(200_000, 213_500) == {"bytes": 13_500, "percent": 6.8}
    assert added(1_600_000, 1_600_700) == {"bytes": 700, "percent": 0.0}


def test_the_summary_is_on_minus_off_of_the_medians_and_of_each_round():
    times = {ON: [10.0, 30.0, 12.0], OFF: [9.0, 8.0, 11.0]}
    row = summary(times)
    assert (row["on_p50"], row["off_p50"], row["difference_p50"]) == (12.0, 9.0, 3.0)
    assert row["paired_p50"] == 1.0  # the rounds' differences are 1, 22 and 1: one slow round moves it not
    assert (row["on_p95"], row["off_p95"]) == (30.0, 11.0)


def _layer(root: Path) -> Path:
    """A layer's python/ folder in small: c2pa with the files the Makefile drops, and packages around it."""
    files = {
        "c2pa/__init__.py": b"x" * 100,
        "c2pa/build.py": b"b" * 4000,
        "c2pa/__pycache__/__init__.cpython-313.pyc": b"p" * 50,
        "c2pa/__pycache__/build.cpython-313.pyc": b"q" * 3000,
        "c2pa/libs/libc2pa_c.so": b"\0" * 10_000,
        "c2pa/libs/libc2pa_c.rlib": b"r" * 30_000,
        "c2pa/libs/libc2pa_c.d": b"d" * 1_000,
        "c2pa_python-0.38.1.dist-info/METADATA": b"m" * 10,
        "c2pa_other/__init__.py": b"o" * 7,  # another package whose name starts alike: not c2pa's
        "cryptography/__init__.py": b"c" * 20,
        "_cffi_backend.cpython-313-aarch64-linux-gnu.so": b"f" * 30,
    }
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def test_a_package_counts_its_folder_and_dist_info_without_what_the_layer_drops(tmp_path):
    root = _layer(tmp_path)
    size = package_size(root, ["c2pa", "c2pa_python-*.dist-info"], LAYER_DROPS)
    assert size["files"] == 4 and size["bytes"] == 100 + 50 + 10_000 + 10
    assert 0 < size["zipped"] < size["bytes"]  # zeros and repeats compress
    whole = package_size(root, ["*"])
    assert whole["files"] == 11 and whole["bytes"] == sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert package_size(root, ["_cffi_backend*"])["files"] == 1  # a module file at the top, not only folders


def test_the_zipped_size_is_a_zip_of_exactly_those_files_at_level_6(tmp_path):
    root = _layer(tmp_path)
    kept = ["c2pa/__init__.py", "c2pa/__pycache__/__init__.cpython-313.pyc", "c2pa/libs/libc2pa_c.so"]
    expected = io.BytesIO()
    with zipfile.ZipFile(expected, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for name in kept:
            archive.write(root / name, name)
    assert package_size(root, ["c2pa"], LAYER_DROPS)["zipped"] == len(expected.getvalue())


def test_every_file_the_bench_leaves_out_is_one_the_makefile_removes():
    """The section's layer figures are the layer's only while the two lists agree."""
    makefile = (ROOT / "layers" / "core" / "Makefile").read_text()
    removed = [line for line in makefile.splitlines() if line.strip().startswith("rm ")]
    for path in LAYER_DROPS:
        assert any(f'"$(TARGET)"/{path}' in line for line in removed), path


def _marking() -> dict:
    sizes = {f: {"image": 171_931, "xmp": added(171_931, 172_622), "mark": added(171_931, 185_407)} for f in FORMATS}
    times = {f: {v: {"p50": 1.5, "p95": 2.25} for v in VARIANTS} for f in FORMATS}
    return {"samples": 20, "sizes": sizes, "times": times}


STACK = {
    "samples": 15,
    "hits": 5,
    "miss": {"on_p50": 299.3, "on_p95": 311.6, "off_p50": 288.4, "off_p95": 310.3, "difference_p50": 10.9,
             "paired_p50": 3.4},
    "hit": {"on_p50": 35.6, "on_p95": 43.4, "off_p50": 34.0, "off_p95": 44.7, "difference_p50": 1.6,
            "paired_p50": -1.3},
}  # fmt: skip


def test_the_section_has_the_heading_the_docs_link_to_and_every_figure():
    layer = {
        "source": "the built Core layer",
        "packages": {"c2pa-python": {"files": 14, "bytes": 21_055_127, "zipped": 8_457_420}},
        "layer": {"files": 1844, "bytes": 58_055_037, "zipped": 21_515_065},
    }
    text = provenance.markdown(_marking(), STACK, layer)
    lines = text.splitlines()
    assert lines[0] == "## Provenance marks"  # docs/trust-and-safety.md links to #provenance-marks
    assert text.endswith("\n")
    assert f"| format, 1024 x 1024 | image | {XMP} | {LOCAL} | {KMS} |" in lines
    assert "| JPEG | 172 KB | 1.5 / 2.25 | 1.5 / 2.25 | 1.5 / 2.25 |" in lines
    assert "| WEBP | 691 B (0.4 %) | 13476 B (7.8 %) |" in lines
    assert "| miss | 299.3 / 311.6 | 288.4 / 310.3 | 10.9 | 3.4 |" in lines
    assert "| hit | 35.6 / 43.4 | 34.0 / 44.7 | 1.6 | -1.3 |" in lines
    assert "| c2pa-python | 14 | 21.1 MB | 8.5 MB |" in lines
    assert "| the whole Core layer | 1844 | 58.1 MB | 21.5 MB |" in lines
    header_cells = {line.count("|") for line in lines if line.startswith("|")}
    assert header_cells <= {4, 5, 6}  # every table's rows as wide as its header


def test_without_a_built_layer_the_section_says_where_its_sizes_come_from():
    layer = {"source": "this virtualenv's packages", "packages": {"c2pa-python": {"files": 1, "bytes": 1, "zipped": 1}}}
    text = provenance.markdown(_marking(), STACK, layer)
    assert "from this virtualenv's packages" in text and "the whole Core layer" not in text
