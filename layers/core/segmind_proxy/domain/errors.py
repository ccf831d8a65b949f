"""What can go wrong, in the domain's terms: no HTTP status here. Each front door maps these errors to its protocol
(see api/segmind_errors.py). Every message is safe to show to the client (it never holds a secret) and is shown as
it is: a failed job records it too. `kind` names the error in logs and metrics; `retryable` says whether the same
work may succeed if tried again (the worker retries a job only then)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class DomainError(Exception):
    kind: str = "error"
    retryable: bool = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class RequestInvalid(DomainError):
    """The request cannot be served as sent; `details` names each bad field (validation errors only)."""

    kind = "invalid_request"

    def __init__(self, message: str, *, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.details = details


class BodyTooLarge(RequestInvalid):
    """The request body is larger than the gateway reads."""


class UnsupportedMediaType(RequestInvalid):
    """The request body is not JSON."""


class UnsupportedEncoding(UnsupportedMediaType):
    """The request body is compressed (a Content-Encoding other than identity)."""


class BudgetExceeded(DomainError):
    """The tenant's monthly budget does not cover the request: refused before any cost."""

    kind = "budget"


class AccessRefused(DomainError):
    """Refused before any work. `cors` is False when the answer must not carry CORS headers (a foreign origin)."""

    kind = "access"

    def __init__(self, message: str, *, cors: bool = True) -> None:
        super().__init__(message)
        self.cors = cors


class NotFound(DomainError):
    """No such thing for this caller (or a feature this gateway does not run)."""

    kind = "not_found"


class MethodNotAllowed(DomainError):
    """The route exists, but not for this method; `allowed` lists the methods it serves."""

    kind = "method_not_allowed"

    def __init__(self, message: str, *, allowed: tuple[str, ...]) -> None:
        super().__init__(message)
        self.allowed = allowed


class ModelNotAllowed(DomainError):
    """The tenant's plan (or its own list) does not include the model asked for: refused before any work."""

    kind = "model_not_allowed"


class PromptRefused(DomainError):
    """A prompt (or negative prompt) the tenant's content policy refuses: answered before any cost. The message names
    the field, never what matched."""

    kind = "content_policy"

    def __init__(self, message: str, *, field: str, reasons: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.field = field
        self.reasons = reasons


class UnknownModel(NotFound):
    """A request named a model this gateway does not serve."""

    kind = "model_not_found"


class Expired(DomainError):
    """It existed, but its images have expired from storage (or were never kept)."""

    kind = "expired"


class IdempotencyInProgress(DomainError):
    """A request with the same Idempotency-Key is still running: retry after `retry_after` seconds."""

    kind = "idempotency"

    def __init__(self, message: str, *, retry_after: int = 2) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class IdempotencyKeyReused(DomainError):
    """An Idempotency-Key sent again with a different request body."""

    kind = "idempotency"


class NotCached(DomainError):
    """Cache-Control: only-if-cached, and the cache could not answer: the answer asked for, not a failure."""

    kind = "not_cached"


class CoalesceTimeout(DomainError):
    """Waited for an identical request's images until the deadline, in vain."""

    kind = "coalesce_timeout"
    retryable = True


class Dependency(StrEnum):
    """What the gateway keeps its state in; each name is also the `kind` of its `Unavailable`."""

    STORAGE = "storage"
    LEDGER = "ledger"
    JOB_STORE = "jobs"
    JOB_QUEUE = "queue"
    TENANT_REGISTRY = "registry"
    LEASES = "leases"
    SCREEN = "screen"
    SIGNING = "signing"

    @property
    def described(self) -> str:
        """As a client's error message names it."""
        return DEPENDENCY_NAMES[self]


DEPENDENCY_NAMES = {
    Dependency.STORAGE: "image storage",
    Dependency.LEDGER: "usage ledger",
    Dependency.JOB_STORE: "job store",
    Dependency.JOB_QUEUE: "job queue",
    Dependency.TENANT_REGISTRY: "tenant registry",
    Dependency.LEASES: "lease store",
    Dependency.SCREEN: "content screen",
    Dependency.SIGNING: "provenance signer",
}


class Unavailable(DomainError):
    """A dependency is down, and the request fails because of it; the message says what that means for the caller
    (such as: nothing was charged, retry shortly)."""

    retryable = True

    def __init__(self, dependency: Dependency, message: str) -> None:
        super().__init__(message)
        self.dependency = dependency
        self.kind = dependency.value


class Outage(Exception):
    """A call to a dependency failed (unreachable, throttled, refused): what the adapters raise instead of their
    SDK's errors, with the SDK's error as its cause. Not a DomainError: a flow that knows what an outage means for the
    caller catches it, and carries on or raises Unavailable saying so; anywhere else it is a fault like any other
    (the API answers 500, the worker leaves the job's message to SQS)."""

    def __init__(self, dependency: Dependency) -> None:
        super().__init__(f"{dependency.value} unavailable")
        self.dependency = dependency


class FailureKind(StrEnum):
    """How a call to Segmind failed (also the ErrorKind dimension of the UpstreamErrors metric)."""

    TIMEOUT = "timeout"
    CONNECTION = "connection"
    AUTH = "auth"  # the gateway's key was refused
    CREDITS = "credits"  # the gateway's account has run out
    RATE_LIMITED = "rate_limited"
    SERVER_ERROR = "server_error"
    REJECTED = "rejected"  # Segmind refused the request itself (another 4xx)
    INVALID_RESPONSE = "invalid_response"
    CONFIG = "config"  # the gateway's key is not configured
    SECRET = "secret"  # the gateway's key could not be read

    @property
    def retryable(self) -> bool:
        """Whether trying again later may succeed; an operator's fix (key, credits) or a refused request will not."""
        return self in _TRANSIENT


_TRANSIENT = frozenset(
    {
        FailureKind.TIMEOUT,
        FailureKind.CONNECTION,
        FailureKind.RATE_LIMITED,
        FailureKind.SERVER_ERROR,
        FailureKind.SECRET,
    }
)


class UpstreamFailure(DomainError):
    """The upstream call failed. `upstream_status`: Segmind's HTTP status, when it answered; `retry_after`: seconds
    until Segmind's rate limit resets, when it said."""

    def __init__(
        self,
        kind: FailureKind,
        message: str,
        *,
        upstream_status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.kind: FailureKind = kind
        self.upstream_status = upstream_status
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        return self.kind.retryable
