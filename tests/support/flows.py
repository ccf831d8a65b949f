"""The generate-or-serve flow called as a front door calls it, from the options a test names."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from segmind_proxy.domain.cache_policy import CachePolicy
from segmind_proxy.domain.images import ImageResult
from segmind_proxy.domain.request import Txt2ImgRequest
from segmind_proxy.domain.tenants import Tenant
from segmind_proxy.domain.usage import Caller
from segmind_proxy.flows.billing import Billing, NoBilling
from segmind_proxy.flows.generate import GenerationService
from segmind_proxy.flows.scope import InlineAnswer, Plan, RequestScope


def generate(
    service: GenerationService,
    request: Txt2ImgRequest,
    *,
    namespace: str = "t",
    seconds: float = 20.0,
    owner: str = "",
    billing: Billing | None = None,
    prefetched: Future[ImageResult | None] | None = None,
    policy: CachePolicy | None = None,
    store_later: Callable[[Any], bool] | None = None,
    tenant: Tenant | None = None,
    **plan: Any,
) -> ImageResult:
    """`store_later(result)`: whether the answer would carry the images whole (they fit inline, or not); the other
    options are the `Plan`'s (by_url, must_store, resumable)."""
    if store_later is not None:
        plan["inline"] = InlineAnswer(True, 10**12 if store_later(None) else 0)
    scope = RequestScope(
        Caller(tenant, namespace),
        owner or uuid.uuid4().hex,
        service.clock() + seconds,
        billing or NoBilling(),
        prefetched,
    )
    return service.generate(request, scope, Plan(policy or CachePolicy(), **plan))
