"""Webhooks recorded instead of sent."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from segmind_proxy.domain.errors import RequestInvalid


@dataclass(frozen=True)
class Delivery:
    url: str
    payload: dict[str, Any]
    secret: str


class FakeWebhooks:
    """`Webhooks`: `check` refuses the URLs in `refused` (with their reason) as the address rules would; `deliver`
    records each delivery and answers as a receiver that took it, or as one that never did (`receiving = False`)."""

    def __init__(self) -> None:
        self.refused: dict[str, str] = {}
        self.delivered: list[Delivery] = []
        self.receiving = True

    def check(self, url: str) -> str:
        if url in self.refused:
            raise RequestInvalid(f"Header 'x-webhook-url': {self.refused[url]}")
        return url

    def deliver(self, url: str, payload: dict[str, Any], secret: str) -> dict[str, Any]:
        self.delivered.append(Delivery(url, payload, secret))
        if self.receiving:
            return {"delivered": True, "attempts": 1, "status": 200}
        return {"delivered": False, "attempts": 3, "error": "HTTP 500"}
