"""One settings object, read from the environment once per container. Every variable is documented in docs/configuration.md."""

from __future__ import annotations

import os
from enum import StrEnum
from functools import cache

from pydantic import BaseModel, Field, field_validator


class WebhookTargets(StrEnum):
    """Where webhooks may go: the values of ALLOW_PRIVATE_WEBHOOKS."""

    PUBLIC = "false"  # https, public addresses only: AWS's rule and the default
    LOOPBACK = "loopback"  # http or https, loopback addresses only: the local stack's receivers


class Settings(BaseModel):
    segmind_base_url: str = Field("https://api.segmind.com", alias="SEGMIND_BASE_URL")
    segmind_api_key_secret: str = Field("", alias="SEGMIND_API_KEY_SECRET")
    secret_max_age_seconds: int = Field(300, ge=0, alias="SECRET_MAX_AGE_SECONDS")
    cache_bucket: str = Field("", alias="CACHE_BUCKET")
    presigned_url_ttl_seconds: int = Field(3600, ge=1, le=604800, alias="PRESIGNED_URL_TTL_SECONDS")
    # The bucket's lifecycle expiry of cached images; a set still in use is renewed before it.
    cache_expiration_days: int = Field(30, ge=1, le=3650, alias="CACHE_EXPIRATION_DAYS")
    upstream_max_attempts: int = Field(3, ge=1, le=10, alias="UPSTREAM_MAX_ATTEMPTS")
    upstream_connect_timeout_seconds: float = Field(3.05, gt=0, alias="UPSTREAM_CONNECT_TIMEOUT_SECONDS")
    # Time kept back from the Lambda deadline to store the image and answer.
    deadline_margin_seconds: float = Field(3.0, ge=0, alias="DEADLINE_MARGIN_SECONDS")
    # How long past its invocation's timeout a budget reservation is held before the sweeper takes it back.
    reservation_grace_seconds: float = Field(60.0, ge=0, alias="RESERVATION_GRACE_SECONDS")
    max_body_bytes: int = Field(65536, ge=1024, alias="MAX_BODY_BYTES")
    # Lambda's response limit is 6 MB for the whole serialised answer; leave room for headers.
    inline_response_max_bytes: int = Field(6_000_000, ge=1, alias="INLINE_RESPONSE_MAX_BYTES")
    tenants_table: str = Field("", alias="TENANTS_TABLE")
    jobs_table: str = Field("", alias="JOBS_TABLE")
    jobs_queue_url: str = Field("", alias="JOBS_QUEUE_URL")
    job_retention_hours: int = Field(24, ge=1, le=720, alias="JOB_RETENTION_HOURS")
    max_job_attempts: int = Field(3, ge=1, le=10, alias="MAX_JOB_ATTEMPTS")
    jobs_dead_letter_arn: str = Field("", alias="JOBS_DEAD_LETTER_ARN")
    # Never set on AWS; the local stack sets `loopback`.
    webhook_targets: WebhookTargets = Field(WebhookTargets.PUBLIC, alias="ALLOW_PRIVATE_WEBHOOKS")
    price_table: str = Field("", alias="PRICE_TABLE")
    log_prompts: bool = Field(True, alias="LOG_PROMPTS")
    # X-Ray subsegments per AWS and Segmind call (Powertools Tracer). Off, the X-Ray SDK is never imported:
    # ~200 ms less cold start, and Lambda's and API Gateway's own traces remain.
    detailed_tracing: bool = Field(False, alias="DETAILED_TRACING")
    # Inline answers go back before their images are cached (the write finishes after, held open by an internal
    # extension through Lambda's Extensions API, whose address Lambda sets).
    store_after_answer: bool = Field(True, alias="STORE_AFTER_ANSWER")
    lambda_runtime_api: str = Field("", alias="AWS_LAMBDA_RUNTIME_API")
    # Prompt screening (docs/trust-and-safety.md): the longest a screen may take; the request's deadline may leave less.
    screen_timeout_seconds: float = Field(2.0, gt=0, le=30, alias="SCREEN_TIMEOUT_SECONDS")
    # Provenance marks (docs/trust-and-safety.md): the stack-wide switch, the KMS key that signs (ECC_NIST_P256,
    # SIGN_VERIFY), the secret holding its certificate chain (PEM, leaf first), and a time-stamp authority (none: the
    # manifest carries no trusted time stamp).
    provenance_marks: bool = Field(True, alias="PROVENANCE_MARKS")
    provenance_key_id: str = Field("", alias="PROVENANCE_KEY_ID")
    provenance_chain_secret: str = Field("", alias="PROVENANCE_CHAIN_SECRET")
    provenance_tsa_url: str = Field("", alias="PROVENANCE_TSA_URL")
    cors_allowed_origins: list[str] = Field(default_factory=lambda: ["*"], alias="CORS_ALLOWED_ORIGINS")

    @field_validator("cors_allowed_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("webhook_targets", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("segmind_base_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")


@cache
def get_settings() -> Settings:
    known = {field.alias for field in Settings.model_fields.values()}
    return Settings.model_validate({k: v for k, v in os.environ.items() if k in known})
