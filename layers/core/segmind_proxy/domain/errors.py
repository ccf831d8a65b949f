"""Errors that map to an HTTP answer with a Segmind-style `{"error": ...}` body."""

from __future__ import annotations

from typing import Any

from segmind_proxy.api.schemas import ErrorBody


class GatewayError(Exception):
    """An error whose message is safe to show to the client (never holds a secret)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        kind: str = "gateway",
        headers: dict[str, str] | None = None,
        details: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.headers = headers or {}
        self.details = details

    def body(self) -> dict[str, Any]:
        return ErrorBody.model_validate({"error": self.message, "errors": self.details}).model_dump(exclude_none=True)


class RequestInvalid(GatewayError):
    def __init__(self, message: str, *, status: int = 400, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(status, message, kind="invalid_request", details=details)


class UpstreamError(GatewayError):
    """The upstream failed; `kind` names the failure for metrics (timeout, auth, credits, ...)."""
