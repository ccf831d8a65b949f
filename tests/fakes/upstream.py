"""Segmind in memory: real images (local/fake_segmind.py's `render`, deterministic per prompt and seed), a balance
that goes down, and failures or misbehaviour on demand."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from local.fake_segmind import render
from segmind_proxy.domain.upstream import Generation

RANDOM_SEED = 777  # what Segmind "draws" for a request with seed -1


@lru_cache(maxsize=256)
def _image(prompt: str, seed: int, width: int, height: int, image_format: str) -> bytes:
    return render(prompt, seed, width, height, image_format, 80)


class FakeUpstream:
    """An `Upstream`. `calls` holds each payload it was sent. `fail_next(error, ...)`: the next calls raise these, in
    order. `seconds`: how long a generation takes (on `sleep`). `images`: answer with this many images whatever the
    batch size (Segmind may return fewer); `image_format`: answer in this format whatever was asked; `request_ids`:
    False to answer without an `x-request-id`."""

    def __init__(
        self,
        *,
        seconds: float = 0.0,
        sleep: Callable[[float], None] = time.sleep,
        balance: float = 100.0,
        price: float = 0.01,
    ) -> None:
        self.seconds = seconds
        self.balance = balance
        self.price = price
        self.images: int | None = None
        self.image_format: str | None = None
        self.request_ids = True
        self.calls: list[dict[str, Any]] = []
        self._errors: list[BaseException] = []
        self._sleep = sleep
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def fail_next(self, *errors: BaseException) -> None:
        with self._lock:
            self._errors.extend(errors)

    def txt2img(self, slug: str, payload: dict[str, Any], *, deadline: float) -> Generation:
        with self._lock:
            self.calls.append(dict(payload))
            error = self._errors.pop(0) if self._errors else None
            request_id = f"up-{next(self._ids)}"
        if error is not None:
            raise error
        if self.seconds:
            self._sleep(self.seconds)
        seed = RANDOM_SEED if payload["seed"] == -1 else payload["seed"]
        image_format = self.image_format or payload["image_format"]
        count = payload["batch_size"] if self.images is None else self.images
        images = [
            _image(payload["prompt"], seed + index, payload["width"], payload["height"], image_format)
            for index in range(count)
        ]
        with self._lock:
            self.balance -= self.price
            balance = self.balance
        upstream_request_id = request_id if self.request_ids else None
        return Generation(images, image_format, seed, round(balance, 6), upstream_request_id, self.seconds * 1000, 1)

    def credits(self, *, deadline: float) -> dict[str, float]:
        return {"credits": self.balance, "free_credits": 0.0}
