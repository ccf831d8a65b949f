"""What marking every generated image as AI-generated costs (adapters/xmp.py, adapters/c2pa_marks.py): the function's
time per image, measured in this process; the bytes a mark adds; a miss's and a hit's latency on the local stack for a
tenant with marks on beside one with marks off; and what the marks' libraries add to the Core layer.

`make bench` (bench/run.py) calls these and renders the section with `markdown`; `python -m bench.provenance` runs
this section alone, on a local stack of its own, and prints it (docs/benchmarks.md is left as it is).

Environment: BENCH_UPSTREAM_LATENCY_MS (default 200) and BENCH_GAP_MS (default 100), as for `make bench`."""

from __future__ import annotations

import fnmatch
import io
import os
import random
import statistics
import sys
import time
import uuid
import zipfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from bench.sampling import GAP_S, after_gap, pct
from local.harness import ROOT, SLUG, RunningStack

FORMATS = ("jpeg", "png", "webp")
MARK_SAMPLES = 20  # marks of each kind, per format
STACK_SAMPLES = 15  # misses per tenant on the local stack
HIT_SAMPLES = 5  # hits per tenant: a hit signs nothing, so a few show whether it costs anything
WARM_REQUESTS = 8  # per tenant before sampling: each container builds its signer on its first marked miss
ZIP_LEVEL = 6  # zip's default deflate level, about what `sam deploy`'s upload archive gets

XMP = "XMP alone"
LOCAL = "XMP + C2PA, local signer"
KMS = "XMP + C2PA, KMS (moto, in-process)"
VARIANTS = (XMP, LOCAL, KMS)
ON, OFF = "marks on", "marks off"

# What layers/core/Makefile removes from c2pa-python's wheel, as paths in the layer's python/ folder (a test holds
# the two together): the Rust static library and build files, which c2pa/lib.py never loads.
LAYER_DROPS = ("c2pa/libs/libc2pa_c.rlib", "c2pa/libs/libc2pa_c.d", "c2pa/build.py")
BUILT_LAYER = ROOT / ".aws-sam" / "build" / "CoreLayer" / "python"
# The layer's entries that marking brought: c2pa for the marks, cryptography (with cffi's backend, which it loads)
# for checking the certificate chain before the first mark.
MARKING_PACKAGES = {
    "c2pa-python": ("c2pa", "c2pa_python-*.dist-info"),
    "cryptography, cffi": ("cryptography", "cryptography-*.dist-info", "cffi", "cffi-*.dist-info", "_cffi_backend*"),
}


# The images: what a model returns, more or less. Smooth shapes and shading (low-resolution colour noise, scaled up)
# with a little grain, so that each format compresses as a photo or a render does, not as a flat test card.


def sample_images(size: int = 1024, seed: int = 7) -> dict[str, bytes]:
    """A `size` x `size` picture as JPEG (quality 85, about 175 KB at 1024), PNG and WebP (quality 85)."""
    from PIL import Image

    rng = random.Random(seed)

    def noise(side: int, mode: str = "RGB") -> Any:
        channels = len(mode)
        return Image.frombytes(mode, (side, side), rng.randbytes(side * side * channels))

    bicubic = Image.Resampling.BICUBIC
    picture = Image.blend(noise(16).resize((size, size), bicubic), noise(128).resize((size, size), bicubic), 0.25)
    picture = Image.blend(picture, noise(size, "L").convert("RGB"), 0.03)
    options: dict[str, dict[str, int]] = {
        "jpeg": {"quality": 85},
        "png": {"compress_level": 6},
        "webp": {"quality": 85},
    }
    images = {}
    for image_format in FORMATS:
        out = io.BytesIO()
        picture.save(out, format=image_format.upper(), **options[image_format])
        images[image_format] = out.getvalue()
    return images


class _PublicKeyOnly:
    """Answers `GetPublicKey` as KMS would, for a key held in this process: so admin/chains.py makes the local
    signer's certificate chain exactly as the local stack makes one for its KMS key."""

    def __init__(self, public_key_der: bytes) -> None:
        self._der = public_key_der

    def get_public_key(self, KeyId: str) -> dict[str, bytes]:
        return {"PublicKey": self._der}


def _local_signer() -> tuple[Callable[[bytes], bytes], bytes]:
    """A signing callback with an ECDSA P-256 key in this process (DER signatures, as KMS returns), and its chain."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from admin.chains import make_local_chain

    key = ec.generate_private_key(ec.SECP256R1())
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    chain = make_local_chain(_PublicKeyOnly(der), "local")
    return lambda data: key.sign(data, ec.ECDSA(hashes.SHA256())), chain


@contextmanager
def _moto_kms() -> Iterator[tuple[Any, str]]:
    """A KMS client on moto in this process (mock_aws) and an ECC_NIST_P256 signing key. The environment is set
    aside meanwhile: an endpoint URL pointing at a local stack's moto server would take the calls out of the mock."""
    import boto3
    from moto import mock_aws

    saved = dict(os.environ)
    for name in [name for name in os.environ if name.startswith("AWS_")]:
        del os.environ[name]
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    try:
        with mock_aws():
            client = boto3.client("kms", region_name="us-east-1")
            key = client.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]
            yield client, key["KeyId"]
    finally:
        os.environ.clear()
        os.environ.update(saved)


def added(original: int, marked: int) -> dict[str, float]:
    """What marking added to an image of `original` bytes that came out `marked` bytes long."""
    return {"bytes": marked - original, "percent": round((marked - original) / original * 100, 1)}


def measure_marking(samples: int = MARK_SAMPLES) -> dict[str, Any]:
    """Per format: the ms each kind of mark takes (median and p95 of `samples`) and the bytes it adds. The kinds
    and formats are timed in rounds, one of each per round, so that the host's drift moves them alike. Every mark
    is read back once first: a figure for a mark that does not verify would mean nothing."""
    from admin.chains import make_local_chain
    from segmind_proxy.adapters.c2pa_marks import C2paMarker, KmsSigner, read_marks
    from segmind_proxy.adapters.xmp import ai_generated_xmp, with_xmp
    from segmind_proxy.domain.provenance import MarkLabel

    images = sample_images()
    label = MarkLabel(
        model=SLUG, model_title="Stable Diffusion 3.5 Turbo", created_at=datetime.now(UTC).isoformat(timespec="seconds")
    )
    packet = ai_generated_xmp(label)
    local_sign, local_chain = _local_signer()
    with _moto_kms() as (client, key_id):
        local = C2paMarker(local_sign, local_chain)
        kms = C2paMarker(KmsSigner(key_id, lambda: client), make_local_chain(client, key_id))
        marks: dict[str, Callable[[bytes, str], bytes]] = {
            XMP: lambda image, image_format: with_xmp(image, image_format, packet),
            LOCAL: lambda image, image_format: local.mark(image, image_format, label),
            KMS: lambda image, image_format: kms.mark(image, image_format, label),
        }
        sizes: dict[str, dict[str, Any]] = {}
        for image_format, image in images.items():
            marked = {name: mark(image, image_format) for name, mark in marks.items()}
            for name in (LOCAL, KMS):
                found = read_marks(marked[name])
                assert found.valid and found.manifest_source_type, (image_format, name, found.problems)
            sizes[image_format] = {
                "image": len(image),
                "xmp": added(len(image), len(marked[XMP])),
                "mark": added(len(image), len(marked[LOCAL])),
            }
        times: dict[str, dict[str, list[float]]] = {f: {name: [] for name in marks} for f in FORMATS}
        for _ in range(samples):
            for image_format, image in images.items():
                for name, mark in marks.items():
                    started = time.perf_counter()
                    mark(image, image_format)
                    times[image_format][name].append((time.perf_counter() - started) * 1000)
    return {
        "samples": samples,
        "sizes": sizes,
        "times": {
            image_format: {
                name: {"p50": round(statistics.median(values), 2), "p95": round(_pct(values, 95), 2)}
                for name, values in kinds.items()
            }
            for image_format, kinds in times.items()
        },
    }


def _pct(values: list[float], p: float) -> float:
    """bench.sampling's percentile, to two decimals: a mark takes a few ms, where one decimal hides the spread."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


# On the local stack: two tenants alike but for their marks, their requests alternating.


def _miss_body() -> dict[str, Any]:
    """A miss as the in-process figures' JPEG: 1024 x 1024 (the fake answers about 470 KB at its quality of 95)."""
    return {"prompt": f"bench marks {uuid.uuid4().hex}", "width": 1024, "height": 1024, "image_format": "jpeg"}


def stack_latency(stack: RunningStack, samples: int = STACK_SAMPLES, hits: int = HIT_SAMPLES) -> dict[str, Any]:
    """Median and p95 ms of a miss and of a hit for a tenant with marks on and one with marks off (new tenants of
    the same plan), their requests alternating and the pair's order swapped each round, so that drift and whatever
    one request leaves behind fall on both alike. Every answer's `x-provenance` and `x-cache` are checked."""
    keys = {}
    for state in (ON, OFF):
        name = f"bench-{'on' if state == ON else 'off'}-{uuid.uuid4().hex[:6]}"
        keys[state] = stack.cli("tenants", "create", name, "--plan", "enterprise")["api_key"]
        if state == OFF:
            stack.cli("tenants", "set-marks", name, "off")
    provenance = {ON: "c2pa", OFF: "none"}
    http = requests.Session()

    def post(state: str, payload: dict[str, Any]) -> requests.Response:
        return http.post(stack.txt2img, json=payload, headers={"x-api-key": keys[state]}, timeout=60)

    def timed(state: str, payload: dict[str, Any], cache: str) -> float:
        elapsed, answer = after_gap(lambda: post(state, payload))
        assert answer.status_code == 200, answer.text[:200]
        assert (answer.headers["x-provenance"], answer.headers["x-cache"]) == (provenance[state], cache), state
        return elapsed

    for _ in range(WARM_REQUESTS):
        for state in (ON, OFF):
            time.sleep(GAP_S)
            assert post(state, _miss_body()).status_code == 200
    repeated = {state: _miss_body() for state in (ON, OFF)}
    for state, payload in repeated.items():
        timed(state, payload, "MISS")  # stored: from here on, a hit

    def rounds(count: int, payload: Callable[[str], dict[str, Any]], cache: str) -> dict[str, list[float]]:
        times: dict[str, list[float]] = {ON: [], OFF: []}
        for turn in range(count):
            for state in (ON, OFF) if turn % 2 == 0 else (OFF, ON):
                times[state].append(timed(state, payload(state), cache))
        return times

    return {
        "samples": samples,
        "hits": hits,
        "miss": summary(rounds(samples, lambda _: _miss_body(), "MISS")),
        "hit": summary(rounds(hits, lambda state: repeated[state], "HIT")),
    }


def summary(times: dict[str, list[float]]) -> dict[str, float]:
    """Median and p95 of each side, the difference of the medians, and the median of the rounds' differences
    (on minus off, round by round: what drift between rounds does not move)."""
    on, off = times[ON], times[OFF]
    return {
        "on_p50": round(statistics.median(on), 1),
        "on_p95": pct(on, 95),
        "off_p50": round(statistics.median(off), 1),
        "off_p95": pct(off, 95),
        "difference_p50": round(statistics.median(on) - statistics.median(off), 1),
        "paired_p50": round(statistics.median(a - b for a, b in zip(on, off, strict=True)), 1),
    }


# The layer: what the marks' packages weigh there.


def _dropped(relative: str, drops: Iterable[str]) -> bool:
    """Whether a file is one of `drops` or the bytecode of one (`c2pa/__pycache__/build.*.pyc` of `c2pa/build.py`)."""
    path = Path(relative)
    if relative in drops:
        return True
    if path.parent.name != "__pycache__" or path.suffix != ".pyc":
        return False
    source = (path.parent.parent / f"{path.name.split('.')[0]}.py").as_posix()
    return source in drops


def package_size(root: Path, patterns: Iterable[str], drops: Iterable[str] = ()) -> dict[str, int]:
    """The files of `root`'s entries matching `patterns` (shell patterns on the names directly in `root`; a folder
    counts with all it holds), but for `drops` (paths relative to `root`): how many, their bytes, and the size of a
    zip of them at ZIP_LEVEL, made in memory."""
    drops = tuple(drops)
    entries = [entry for entry in sorted(root.iterdir()) if any(fnmatch.fnmatch(entry.name, p) for p in patterns)]
    files = []
    for entry in entries:
        for path in sorted(entry.rglob("*")) if entry.is_dir() else [entry]:
            if path.is_file() and not _dropped(path.relative_to(root).as_posix(), drops):
                files.append(path)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED, compresslevel=ZIP_LEVEL) as zipped:
        for path in files:
            zipped.write(path, path.relative_to(root).as_posix())
    return {"files": len(files), "bytes": sum(path.stat().st_size for path in files), "zipped": len(archive.getvalue())}


def layer_cost(built: Path = BUILT_LAYER) -> dict[str, Any]:
    """The marking packages' size in the built Core layer (`make build`'s, aarch64), or where it has not been built,
    in this virtualenv less what the layer drops (this machine's wheels: the same files, built for x86_64), and the
    whole built layer's."""
    if (built / "c2pa").is_dir():
        root, source = built, "the built Core layer (`make build`, aarch64)"
    else:
        import c2pa

        root = Path(c2pa.__file__).resolve().parents[1]
        source = "this virtualenv's packages (x86_64) less what the layer drops: run `make build` for the layer's own"
    cost: dict[str, Any] = {
        "source": source,
        "packages": {name: package_size(root, patterns, LAYER_DROPS) for name, patterns in MARKING_PACKAGES.items()},
    }
    if root == built:
        cost["layer"] = package_size(built, ["*"])
    return cost


# The section of docs/benchmarks.md.


def _mb(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB"


def markdown(marking: dict[str, Any], stack: dict[str, Any], layer: dict[str, Any]) -> str:
    """The `## Provenance marks` section (docs/trust-and-safety.md links to it), ending with a newline."""
    times, sizes = marking["times"], marking["sizes"]
    lines = [
        "## Provenance marks",
        "",
        "What marking each generated image as AI-generated costs (docs/trust-and-safety.md): the IPTC digital source "
        "type in XMP, then a C2PA manifest signed through a callback, on AWS by the stack's KMS key. A hit serves the "
        "stored, already marked bytes and signs nothing.",
        "",
        f"Per image, in this process: median / p95 ms of {marking['samples']} marks of each kind, timed in rounds (one "
        "of each kind and format per round). *XMP alone* writes the packet into the image's bytes; *local signer* is "
        "the whole mark (XMP, then the manifest built, the image hashed and the claim signed) with an ECDSA P-256 key "
        "held in this process: the gateway's own CPU; *KMS (moto, in-process)* is the same with each signature a KMS "
        "`Sign` call through botocore to moto in this process, where on AWS a round trip to KMS takes its place. "
        "No pixel is decoded or encoded again.",
        "",
        f"| format, 1024 x 1024 | image | {' | '.join(VARIANTS)} |",
        "|---|---|---|---|---|",
    ]
    for image_format in FORMATS:
        cells = " | ".join(f"{times[image_format][v]['p50']} / {times[image_format][v]['p95']}" for v in VARIANTS)
        lines.append(f"| {image_format.upper()} | {sizes[image_format]['image'] / 1000:.0f} KB | {cells} |")
    lines += [
        "",
        "Bytes a mark adds to each image (the whole mark includes the XMP; most of the manifest is the space the C2PA "
        "library reserves for a signature made outside it):",
        "",
        "| format | XMP alone | the whole mark |",
        "|---|---|---|",
        *[
            f"| {f.upper()} | {sizes[f]['xmp']['bytes']} B ({sizes[f]['xmp']['percent']} %) "
            f"| {sizes[f]['mark']['bytes']} B ({sizes[f]['mark']['percent']} %) |"
            for f in FORMATS
        ],
        "",
        f"On the local stack: a tenant with marks on and one with marks off, alike otherwise, their requests "
        f"alternating ({stack['samples']} misses and {stack['hits']} hits each, the pair's order swapped each round, "
        f"{int(GAP_S * 1000)} ms apart). A miss is a 1024 x 1024 JPEG from the fake Segmind (about 470 KB): marking "
        "it adds the function's time above and one KMS `Sign` call to the local stack's moto server. "
        "*Difference* is on minus off, of the medians; *paired* is the median of the rounds' own differences. Every "
        "answer's `x-provenance` (`c2pa` or `none`) and `x-cache` were checked.",
        "",
        "| path | marks on p50 / p95 (ms) | marks off p50 / p95 (ms) | difference (ms) | paired (ms) |",
        "|---|---|---|---|---|",
    ]
    for path in ("miss", "hit"):
        row = stack[path]
        lines.append(
            f"| {path} | {row['on_p50']} / {row['on_p95']} | {row['off_p50']} / {row['off_p95']} "
            f"| {row['difference_p50']} | {row['paired_p50']} |"
        )
    lines += [
        "",
        f"In the Core layer, from {layer['source']}: what marking brings, unzipped and zipped (deflate level "
        f"{ZIP_LEVEL}). c2pa-python is its native library (c2pa-rs) and the ctypes binding, without the build-only "
        "files layers/core/Makefile drops; cryptography checks the certificate chain before the first mark, and "
        "loads cffi's backend.",
        "",
        "| package | files | unzipped | zipped |",
        "|---|---|---|---|",
        *[
            f"| {name} | {size['files']} | {_mb(size['bytes'])} | {_mb(size['zipped'])} |"
            for name, size in layer["packages"].items()
        ],
    ]
    if "layer" in layer:
        whole = layer["layer"]
        lines.append(f"| the whole Core layer | {whole['files']} | {_mb(whole['bytes'])} | {_mb(whole['zipped'])} |")
    lines += [
        "",
        "Lambda allows 250 MB unzipped for a function with its layers.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    """This section alone, on a local stack of its own; prints it."""
    from bench.host import host_speed_ms
    from local.harness import start_stack, stop_stack

    speed = [host_speed_ms()]
    marking = measure_marking()  # before the stack starts: nothing else on the cores
    upstream = os.environ.get("BENCH_UPSTREAM_LATENCY_MS", "200")
    stack = start_stack({"FAKE_SEGMIND_LATENCY_MS": upstream, "LOCAL_LAMBDA_CONCURRENCY": "6"})
    try:
        latency = stack_latency(stack)
    finally:
        stop_stack(stack.process)
    speed.append(host_speed_ms())
    print(markdown(marking, latency, layer_cost()))
    print(f"Host speed (a 5-million-step loop): {speed[0]} ms before, {speed[1]} ms after.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
