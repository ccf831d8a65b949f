"""Response bodies as models: delivery builds its JSON from them and the OpenAPI spec documents them."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Schema(BaseModel):
    """A response or request body built (its validator and serializer) on first use rather than at import: most
    routes use one or two of these, and a cold start's first request should not pay for the rest. SnapStart's
    before-snapshot hook builds them all (`build_all`)."""

    model_config = ConfigDict(defer_build=True)


class FieldError(Schema):
    field: str = Field(description="The request field (or 'body') at fault")
    message: str


class ErrorBody(Schema):
    """Segmind's error shape, `{"error": "..."}`; validation errors also list each bad field."""

    error: str = Field(description="What went wrong, naming every bad field")
    errors: list[FieldError] | None = Field(None, description="One entry per bad field (validation errors only)")


class Base64Images(Schema):
    """`base64: true`: Segmind's `{"image": ...}`; with `batch_size` > 1, `images` holds every image in order."""

    image: str = Field(description="The first (or only) image, base64-encoded")
    images: list[str] | None = Field(None, description="Every image of a batch, base64-encoded (batch_size > 1 only)")


class ImageUrl(Schema):
    url: str = Field(description="Presigned HTTPS GET URL of the image")
    content_type: str


class ImageUrls(Schema):
    """`x-response-mode: url`, or an answer too large for Lambda's 6 MB limit: presigned URLs instead of bytes."""

    images: list[ImageUrl]
    expires_in: int = Field(description="Seconds the URLs stay valid")
    expires_at: str = Field(description="ISO 8601 UTC time the URLs expire")
    cache: str = Field(description="HIT, MISS or BYPASS")
    seed: int | None = Field(description="The seed used (null if the upstream did not report a random seed)")
    image_format: str


class Health(Schema):
    status: str


class UsageReport(Schema):
    """A tenant's figures for one calendar month (UTC). Cache hits are free; credits are estimates (see docs/operations.md)."""

    tenant_id: str
    name: str
    plan: str
    month: str = Field(description="YYYY-MM, UTC")
    requests: int
    cache_hits: int
    images_generated: int
    credits_spent: float
    credits_reserved: float = Field(
        description="Held by generations in flight, and for a few milliseconds after an inline answer until its "
        "settlement is written"
    )
    failed_generations: int
    rejected_requests: int = Field(description="Refused before any cost: invalid, over budget or by the content policy")
    refused_prompts: int = Field(description="Of the rejected requests, those the tenant's content policy refused")
    unscreened_requests: int = Field(
        description="Served without screening, because the screen could not answer and the policy fails open"
    )
    budget: dict[str, float | int | None] = Field(description="Monthly budget in credits and images (null: none)")
    remaining: dict[str, float | int | None] = Field(description="What remains of each budget (null: no budget)")
    by_model: dict[str, dict[str, float | int]] = Field(
        description="Per model slug: images_generated and credits_spent this month (models with none left out)"
    )


class JobSubmitted(Schema):
    """Segmind v2 submit answer; the URLs are absolute, on this gateway."""

    request_id: str
    status: str = Field(description="QUEUED, or COMPLETED at once on a cache hit")
    poll_url: str
    status_url: str
    response_url: str


class JobStatusBody(Schema):
    request_id: str
    status: str = Field(description="QUEUED, PROCESSING, COMPLETED or FAILED")
    error: str | None = None


class JobResultBody(JobStatusBody):
    output: str | list[str] | None = Field(None, description="Presigned image URL (a list for batch_size > 1)")
    outputs: list[str] | None = Field(None, description="Every image URL, always a list")
    expires_in: int | None = Field(None, description="Seconds the URLs stay valid")
    metrics: dict[str, object] | None = None


class OpenAIError(Schema):
    message: str
    type: str = Field(description="invalid_request_error, insufficient_quota, permission_error, server_error, ...")
    param: str | None = Field(description="The request parameter at fault, as OpenAI names it")
    code: str | None


class OpenAIErrorBody(Schema):
    """OpenAI's error shape (the openai SDKs raise by status and keep this as `.body`)."""

    error: OpenAIError


class OpenAIImage(Schema):
    b64_json: str | None = Field(None, description="The image, base64-encoded (response_format b64_json)")
    url: str | None = Field(None, description="Presigned HTTPS GET URL (response_format url, or too large to inline)")


class OpenAIImagesResponse(Schema):
    """OpenAI's images answer: one item per image, in order."""

    created: int = Field(description="Unix seconds")
    data: list[OpenAIImage]
    output_format: str = Field(description="png, jpeg or webp")
    size: str | None = Field(None, description="WIDTHxHEIGHT of the images (absent: a model sized by aspect ratio)")


class OpenAIImageRequest(Schema):
    """OpenAI's `POST /v1/images/generations` fields this gateway honours; each model adds its own fields as
    extensions, and bounds `n`, `size`, `output_format` and `output_compression` by its own (the spec has one such
    schema per model). Any other field (OpenAI's `style`, `stream`, `partial_images`, ... included) is refused,
    named. `null` is the field absent, as OpenAI's SDKs send it."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    model: str | None = Field(
        None, description="The model's OpenAI id, or Segmind's slug; another: 404 model_not_found"
    )
    prompt: str
    n: int | None = Field(None, ge=1, description="Images in one upstream batch (the model's batch field)")
    size: str | None = Field(None, description="'auto' (the model's default) or 'WIDTHxHEIGHT'")
    response_format: str | None = Field(
        None, json_schema_extra={"enum": ["b64_json", "url", None]}, description="default b64_json"
    )
    output_format: str | None = Field(
        None, json_schema_extra={"enum": ["png", "jpeg", "webp", None]}, description="default jpeg"
    )
    output_compression: int | None = Field(None, description="The model's quality field")
    quality: str | None = Field(None, json_schema_extra={"enum": ["auto", None]})
    background: str | None = Field(None, json_schema_extra={"enum": ["auto", "opaque", None]})
    moderation: str | None = Field(
        None, json_schema_extra={"enum": ["auto", "low", None]}, description="none is applied"
    )
    user: str | None = Field(None, max_length=256, description="Recorded in the request's logs, never sent upstream")
    safety_identifier: str | None = Field(
        None, max_length=256, description="Recorded in the request's logs, never sent upstream"
    )


class OpenAIModel(Schema):
    id: str
    object: str = "model"
    created: int
    owned_by: str


class OpenAIModelList(Schema):
    object: str = "list"
    data: list[OpenAIModel]


def every_schema(base: type[Schema] = Schema) -> list[type[Schema]]:
    return [model for direct in base.__subclasses__() for model in (direct, *every_schema(direct))]


def build_all() -> None:
    """Build every schema now (SnapStart's before-snapshot hook), so a restored environment builds none."""
    for schema in every_schema():
        schema.model_rebuild()
