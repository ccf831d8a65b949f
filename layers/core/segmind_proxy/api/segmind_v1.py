"""Segmind's v1 front door, HTTP-shaped but free of any web framework: its request (the model its path names, the
body parsed and checked once, the response mode asked) as an `Order`, and its answer's shape: raw bytes, base64 JSON
or presigned URLs. The rest is the one synchronous path (`synchronous.serve`)."""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta

from segmind_proxy.api.bodies import check_body
from segmind_proxy.api.delivery import RESPONSE_MODE_HEADER, Delivery, Order, Reply, ResponseMode
from segmind_proxy.api.schemas import Base64Images, ImageUrl, ImageUrls
from segmind_proxy.api.services import Incoming, Services
from segmind_proxy.api.synchronous import Door, start_cache_read
from segmind_proxy.domain.catalog import Catalog, ModelSpec
from segmind_proxy.domain.errors import RequestInvalid, UnknownModel
from segmind_proxy.domain.images import ImageResult
from segmind_proxy.domain.request import Txt2ImgRequest, parse_request


def response_mode(headers: Mapping[str, str]) -> ResponseMode:
    raw = headers.get(RESPONSE_MODE_HEADER)
    if raw is None:
        return ResponseMode.INLINE
    try:
        return ResponseMode(raw.strip().lower())  # an empty value too is refused: it is no mode
    except ValueError:
        allowed = ", ".join(mode.value for mode in ResponseMode)
        raise RequestInvalid(f"Header '{RESPONSE_MODE_HEADER}' must be one of: {allowed}") from None


def model_named(catalog: Catalog, name: str) -> ModelSpec:
    """The catalog model a Segmind route's path names by its slug, or UnknownModel (404) saying where the models are
    listed. A name that is not a plain slug (path tricks, control characters, a very long one) is not echoed."""
    model = catalog.find(name)
    if model is None or model.slug != name:
        shown = f"'{name}'" if _PLAIN_NAME.fullmatch(name) else "asked for"
        raise UnknownModel(
            f"No model {shown} on this gateway: GET /v1/models lists the models (with a Bearer key), and /docs their "
            "routes and fields"
        )
    return model


_PLAIN_NAME = re.compile(r"[A-Za-z0-9._-]{1,100}")


def parse_body(body: bytes | None, headers: Mapping[str, str], services: Services, model: str) -> Txt2ImgRequest:
    """A Segmind body for the model its path names, checked (size, media type) and parsed: what v1 and v2 read."""
    spec = model_named(services.catalog, model)
    check_body(body, headers, services.settings)
    return parse_request(body, spec)


def validate(body: bytes | None, headers: Mapping[str, str], services: Services, model: str) -> Order:
    """Every check of a v1 request that needs no I/O, so a bad request costs nothing."""
    request = parse_body(body, headers, services, model)
    mode = response_mode(headers)
    if not request.base64 and request.count > 1:
        mode = ResponseMode.URL  # a raw answer carries one image: a batch comes back as URLs, none lost
    # A key is its tenant's, on one route of one model: the same body sent to another model is another request.
    return Order(request, mode, request.base64, f"v1/{request.slug}")


def translate(incoming: Incoming, services: Services) -> Order:
    return validate(incoming.body, incoming.headers, services, incoming.model)


def shape(delivery: Delivery, order: Order) -> Reply:
    """Presigned URLs with their expiry; or the images whole: base64 JSON where asked, else the one image's bytes."""
    result, headers = delivery.result, delivery.headers
    if delivery.urls is not None:
        return Reply(200, "application/json", _url_body(result, delivery.urls, delivery.ttl), headers)
    images = result.images or []
    if order.as_base64:
        encoded = [base64.b64encode(image).decode() for image in images]
        # A batch keeps its shape (`images`) even when Segmind returned fewer images than asked, or one.
        body = Base64Images(image=encoded[0], images=encoded if result.asked > 1 or len(encoded) > 1 else None)
        return Reply(200, "application/json", body.model_dump_json(exclude_none=True), headers)
    return Reply(200, result.content_type, images[0], headers)


def _url_body(result: ImageResult, urls: list[str], ttl: int) -> str:
    expires_at = (datetime.now(UTC) + timedelta(seconds=ttl)).isoformat(timespec="seconds")
    return ImageUrls(
        images=[ImageUrl(url=url, content_type=result.content_type) for url in urls],
        expires_in=ttl,
        expires_at=expires_at,
        cache=result.cache.value,
        seed=result.seed,
        image_format=result.image_format,
    ).model_dump_json()


DOOR = Door(translate, shape)


def prefetch_cache_read(
    body: bytes | None,
    headers: Mapping[str, str],
    model: str,
    namespace: str,
    services: Services,
    *,
    v2: bool = False,
) -> tuple[Order | None, Future[ImageResult | None] | None]:
    """The body parsed once, at the edge, and the cache read of a request that will make one, started so that it
    overlaps the tenant check; None for a request that would not read the cache (invalid, random seed,
    `no-cache`). Its answer is used only once authorized. A v2 submit only ever checks that the images exist (its
    result is URLs). An invalid body is parsed again by its route, which refuses it and counts the refusal."""
    try:
        if v2:  # a v2 submit reads no response mode: its result is always URLs
            request = parse_body(body, headers, services, model)
            order = Order(request, ResponseMode.URL, request.base64, f"v2/{request.slug}")
        else:
            order = validate(body, headers, services, model)
    except (RequestInvalid, UnknownModel):
        return None, None
    return order, start_cache_read(order, headers, namespace, services)
