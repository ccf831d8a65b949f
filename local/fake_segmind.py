"""A fake Segmind for the local stack and tests: real images (deterministic per seed, showing the prompt), Segmind's headers,
a decreasing credit balance, and switches for latency and failures. Never used in the production path."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import random
import textwrap
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from PIL import Image, ImageDraw, ImageFont
from pydantic import ValidationError
from werkzeug.wrappers import Request, Response

from segmind_proxy.domain.catalog import Role, bundled_catalog
from segmind_proxy.domain.request import invalid_request, validated

CREDITS_PER_MEGAPIXEL_STEP = 0.0008  # made-up price; only its shape matters locally
PIL_FORMATS = {"jpeg": ("JPEG", "image/jpeg"), "png": ("PNG", "image/png"), "webp": ("WEBP", "image/webp")}


@dataclass
class FakeState:
    api_key: str
    credits: float = 1000.0
    latency_ms: float = 0.0
    # When set, (low, high) in ms: each request's latency drawn from a hash of its body, so the same request
    # waits as long whichever client sends it (a benchmark's targets compared on one schedule), in place of
    # `latency_ms`.
    latency_ms_range: tuple[float, float] | None = None
    calls: list[dict[str, Any]] = field(default_factory=list)
    # Injected failures, consumed one per call: {"status": 500} or {"status": 429, "reset_in": 1} or {"body": "..."};
    # or a 200 that misbehaves: {"trickle_seconds": 20} sends its body spread over that long, {"image_format": "jpeg"}
    # renders another format than asked, {"images": 1} returns fewer images than `batch_size`.
    faults: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def body_latency_ms(body: object, low: float, high: float) -> float:
    """A latency in [low, high] that depends only on the body's JSON (key order aside)."""
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).digest()
    return low + int.from_bytes(digest[:8], "big") / 2**64 * (high - low)


def _latency_range(value: object) -> tuple[float, float] | None:
    """`latency_ms_range` as `/_fake/config` takes it: [low, high] in ms, or null for the fixed `latency_ms`."""
    if value is None:
        return None
    low, high = (float(v) for v in value)  # type: ignore[union-attr]
    if not 0 <= low <= high:
        raise ValueError(f"latency_ms_range must be [low, high] with 0 <= low <= high, not {value}")
    return low, high


def size_of_ratio(ratio: str | None) -> tuple[int, int]:
    """About a megapixel at an aspect ratio (`16:9`), in multiples of 64, for a model whose page names no sizes."""
    wide, high = (int(part) for part in (ratio or "1:1").split(":"))
    scale = (1024 * 1024 / (wide * high)) ** 0.5
    return max(64, round(wide * scale / 64) * 64), max(64, round(high * scale / 64) * 64)


def render(prompt: str, seed: int, width: int, height: int, image_format: str, quality: int) -> bytes:
    """A deterministic picture for (prompt, seed, size, format): a seeded gradient and shapes, with the prompt written on it."""
    rng = random.Random(int.from_bytes(hashlib.sha256(f"{seed}\n{prompt}".encode()).digest()[:8], "big"))
    top = tuple(rng.randrange(40, 216) for _ in range(3))
    bottom = tuple(rng.randrange(40, 216) for _ in range(3))
    gradient = Image.linear_gradient("L").resize((width, height))
    image = Image.composite(Image.new("RGB", (width, height), bottom), Image.new("RGB", (width, height), top), gradient)
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x, y = rng.randrange(width), rng.randrange(height)
        radius = rng.randrange(max(2, min(width, height) // 20), max(3, min(width, height) // 4))
        colour = tuple(rng.randrange(256) for _ in range(3))
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=colour, outline=(0, 0, 0))
    # Photo-like grain, so sizes are realistic (a 2048x2048 PNG of several MB, as real generations are).
    grain = Image.frombytes("L", (width, height), rng.randbytes(width * height)).convert("RGB")
    image = Image.blend(image, grain, 0.12)
    draw = ImageDraw.Draw(image)
    font_size = max(8, min(width, height) // 16)
    font = ImageFont.load_default(size=font_size)
    columns = max(8, int(width / (font_size * 0.55)))
    lines = [*textwrap.wrap(prompt, columns)[:6], f"seed {seed}"]
    text = "\n".join(lines)
    box = draw.multiline_textbbox((0, 0), text, font=font)
    left, top_y = (width - (box[2] - box[0])) // 2, (height - (box[3] - box[1])) // 2
    pad = font_size // 2
    draw.rectangle(
        (left - pad, top_y - pad, left + box[2] - box[0] + pad, top_y + box[3] - box[1] + pad), fill=(0, 0, 0)
    )
    draw.multiline_text((left, top_y), text, font=font, fill=(255, 255, 255), align="center")
    out = io.BytesIO()
    pil_format = PIL_FORMATS[image_format][0]
    options = {"quality": quality} if pil_format in ("JPEG", "WEBP") else {"compress_level": 1}
    image.save(out, format=pil_format, **options)
    return out.getvalue()


MISBEHAVIOURS = frozenset({"trickle_seconds", "image_format", "images"})


def _trickled(answer: Response, seconds: float, pieces: int = 40) -> Response:
    """The answer's headers at once, then its body in `pieces` spread over `seconds`: a slow upstream link."""
    body = answer.get_data()
    size = max(1, -(-len(body) // pieces))

    def drip() -> Any:
        for start in range(0, len(body), size):
            yield body[start : start + size]
            time.sleep(seconds / pieces)

    return Response(drip(), status=answer.status_code, headers=dict(answer.headers), direct_passthrough=True)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps({"error": message}), status=status, content_type="application/json", headers=headers)


class FakeSegmind:
    """WSGI app speaking the subset of Segmind's API the gateway uses, plus `/_fake/*` controls for tests."""

    def __init__(self, api_key: str, *, credits: float = 1000.0, latency_ms: float = 0.0) -> None:
        self.state = FakeState(api_key=api_key, credits=credits, latency_ms=latency_ms)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        return self.dispatch(Request(environ))(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        path = request.path
        if path.startswith("/_fake/"):
            return self._control(request)
        if request.headers.get("x-api-key") != self.state.api_key:
            return _error(401, "Invalid API key")
        if path == "/v1/get-user-credits" and request.method == "GET":
            return Response(
                json.dumps({"credits": round(self.state.credits, 4), "free-credits": 0.0}),
                content_type="application/json",
            )
        if path.startswith("/v1/") and request.method == "POST":
            return self._txt2img(request)
        if path.startswith("/v1/"):
            return Response("<html><body>405 Method Not Allowed</body></html>", status=405, content_type="text/html")
        return _error(404, "Not found")

    def _control(self, request: Request) -> Response:
        state = self.state
        with state.lock:
            if request.path == "/_fake/stats":
                body = {"calls": len(state.calls), "credits": state.credits, "requests": state.calls[-50:]}
                return Response(json.dumps(body), content_type="application/json")
            if request.path == "/_fake/reset" and request.method == "POST":
                state.calls.clear()
                state.faults.clear()
                return Response("{}", content_type="application/json")
            if request.path == "/_fake/config" and request.method == "POST":
                config = request.get_json(force=True)
                try:
                    latency_range = _latency_range(config.get("latency_ms_range", state.latency_ms_range))
                except (TypeError, ValueError) as exc:
                    return _error(400, str(exc))
                state.latency_ms_range = latency_range
                state.latency_ms = float(config.get("latency_ms", state.latency_ms))
                state.credits = float(config.get("credits", state.credits))
                state.api_key = str(config.get("api_key", state.api_key))
                state.faults.extend(config.get("faults", []))
                return Response("{}", content_type="application/json")
        return _error(404, "Not found")

    def _txt2img(self, request: Request) -> Response:
        state = self.state
        if request.mimetype != "application/json":
            return _error(406, "Content-Type must be application/json")
        slug = request.path.removeprefix("/v1/")
        model = bundled_catalog().find(slug)
        if model is None or model.slug != slug:
            return _error(404, f"Model '{slug}' not found")
        try:
            body = json.loads(request.get_data())
            asked = validated(model, body)  # the model's own fields and ranges, as its page documents them
        except ValidationError as exc:
            return _error(400, invalid_request(exc).message)
        except (ValueError, TypeError):
            return _error(400, "the body must be a JSON object")
        with state.lock:
            state.calls.append({"path": request.path, "api_key": request.headers.get("x-api-key"), "body": body})
            fault = state.faults.pop(0) if state.faults else None
            latency = (
                state.latency_ms if state.latency_ms_range is None else body_latency_ms(body, *state.latency_ms_range)
            )
        if latency:
            time.sleep(latency / 1000)
        if fault and not fault.keys() & MISBEHAVIOURS:
            return self._fault(fault)
        fault = fault or {}
        width, height = asked.size or size_of_ratio(asked.role(Role.ASPECT_RATIO))
        steps, batch = int(asked.role(Role.STEPS) or 4), asked.count
        cost = CREDITS_PER_MEGAPIXEL_STEP * width * height / 1e6 * steps * batch
        with state.lock:
            if state.credits < cost:
                return _error(406, "Not enough credits")
            state.credits -= cost
            remaining = state.credits
        seed = random.randrange(0, 2**32) if asked.random_seed or asked.seed is None else asked.seed
        image_format = str(fault.get("image_format", asked.expected_format))
        quality = max(1, int(asked.role(Role.QUALITY) or 95))
        started = time.monotonic()
        made = int(fault.get("images", batch))
        images = [render(asked.prompt, seed + i, width, height, image_format, quality) for i in range(made)]
        headers = {
            "x-remaining-credits": f"{remaining:.6f}",
            "x-seed-value": str(seed),
            "x-request-id": str(uuid.uuid4()),
            "x-generation-time": f"{time.monotonic() - started:.3f}",
            "x-rate-limit-remaining": "49",
        }
        # Base64 JSON when asked; a model without that field answers its image's bytes, and a batch as JSON (what
        # Segmind sends for a batch of such a model is not documented: the gateway reads either).
        if asked.base64 or (model.field_of(Role.BASE64) is None and batch > 1):
            encoded = [base64.b64encode(image).decode() for image in images]
            payload = {"image": encoded[0]} if batch == 1 else {"images": encoded}
            answer = Response(json.dumps(payload), content_type="application/json", headers=headers)
        else:
            answer = Response(images[0], content_type=PIL_FORMATS[image_format][1], headers=headers)
        if "trickle_seconds" in fault:
            return _trickled(answer, float(fault["trickle_seconds"]))
        return answer

    @staticmethod
    def _fault(fault: dict[str, Any]) -> Response:
        if "body" in fault:
            return Response(
                fault["body"], status=fault.get("status", 200), content_type=fault.get("content_type", "image/jpeg")
            )
        status = int(fault["status"])
        headers = {}
        if "reset_in" in fault:
            reset = datetime.now(UTC) + timedelta(seconds=float(fault["reset_in"]))
            headers["x-rate-limit-reset-at-utc"] = reset.isoformat()
        messages = {401: "Invalid API key", 406: "Not enough credits", 429: "Rate limit exceeded"}
        return _error(status, messages.get(status, "Internal server error"), headers)
