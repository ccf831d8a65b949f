"""Tenants: who resells the gateway's images, on what plan and budgets, and from which origins."""

from __future__ import annotations

import base64
import re
import secrets
from dataclasses import dataclass, field
from enum import StrEnum

from segmind_proxy.domain.screening import ScreeningPolicy

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{1,62}$")


class TenantStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    DELETED = "deleted"  # its key and name are gone; its profile stays, so its usage can still be billed by name


class RegistryError(Exception):
    """A registry operation that cannot be done as asked (unknown tenant, duplicate name, ...)."""


class RegistryConflict(RegistryError):
    """The profile changed since it was read (another operator, another machine): read it again and retry."""


@dataclass
class Tenant:
    tenant_id: str
    name: str
    plan: str
    api_key_id: str
    status: TenantStatus = TenantStatus.ACTIVE
    budget_credits: float | None = None  # per calendar month (UTC); None: no credit budget
    budget_images: int | None = None  # per calendar month (UTC); None: no image budget
    allowed_origins: list[str] = field(default_factory=list)  # empty: any origin (server-side key)
    created_at: str = ""
    webhook_secret: str = field(default_factory=lambda: new_webhook_secret())  # signs this tenant's job webhooks
    version: int = 0  # of the stored profile; a write must name the version it read (optimistic locking)
    deleted_at: str = ""  # when the operator deleted it (ISO 8601, UTC); empty while it exists
    models: list[str] = field(default_factory=list)  # the models it may use (slugs); empty: its plan's
    plan_models: list[str] = field(default_factory=list)  # its plan's models, as the CLI stamps them; empty: all
    screening: ScreeningPolicy = field(default_factory=ScreeningPolicy)  # how its prompts are screened
    marks: bool = True  # its images carry provenance marks (XMP and a signed C2PA manifest)
    marks_prompt: bool = False  # and the manifest holds the prompt (off: prompts can be private)

    @property
    def allowed_models(self) -> list[str] | None:
        """The slugs it may use: its own list, else its plan's; None: every model."""
        return self.models or self.plan_models or None

    def may_use(self, slug: str) -> bool:
        allowed = self.allowed_models
        return allowed is None or slug in allowed

    @property
    def deleted(self) -> bool:
        return self.status is TenantStatus.DELETED

    @property
    def active(self) -> bool:
        return self.status is TenantStatus.ACTIVE

    def origin_allowed(self, origin: str | None) -> bool:
        return not self.allowed_origins or (origin is not None and origin in self.allowed_origins)


WEBHOOK_SECRET_BYTES = 24  # the least the Standard Webhooks specification allows (it says 24 to 64)


def new_webhook_secret() -> str:
    """A Standard Webhooks secret: `whsec_` and the base64 of random bytes, the HMAC key. Secrets made before were
    `whsec_` and 48 hex characters: they stay valid, as base64 of 36 bytes (adapters/webhooks.py)."""
    return f"whsec_{base64.b64encode(secrets.token_bytes(WEBHOOK_SECRET_BYTES)).decode()}"


def new_tenant_id() -> str:
    return f"t_{secrets.token_hex(6)}"
