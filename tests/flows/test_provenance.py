"""Marking in the generate flow (on the fakes): images are marked once, before they are stored, so a hit, a replay or
a URL serves the very bytes that were marked and a hit signs nothing; a tenant with marks off gets unmarked images; a
signer that cannot sign refuses the generation before anything is paid; a signer that fails mid-way still delivers
the paid images, unmarked and uncached."""

from __future__ import annotations

import pytest

from segmind_proxy.domain.cache_policy import CacheStatus
from segmind_proxy.domain.errors import Dependency, Unavailable
from segmind_proxy.domain.provenance import Provenance
from segmind_proxy.domain.request import default_model, validated
from segmind_proxy.flows.billing import TenantBilling
from segmind_proxy.flows.generate import GenerationService
from tests.fakes.provenance import FakeMarker, marked
from tests.support.aws import make_tenant
from tests.support.flows import generate

REQUEST = validated(default_model(), {"prompt": "a red fox", "width": 128, "height": 128, "seed": 42})


@pytest.fixture
def marker():
    return FakeMarker()


@pytest.fixture
def service(store, segmind, leases, clock, deferrer, marker):
    return GenerationService(store, segmind, leases, clock=clock, sleep=clock.sleep, later=deferrer, marker=marker)


def test_a_miss_is_marked_before_it_is_stored_and_a_hit_serves_those_bytes_without_signing(service, marker, store):
    first = generate(service, REQUEST)
    assert first.provenance is Provenance.MARKED and all(marked(image) for image in first.images)
    assert [label.model for label in marker.labels] == [REQUEST.slug]
    assert marker.labels[0].model_title == "Stable Diffusion 3.5 Turbo" and marker.labels[0].prompt is None
    stored, _, metadata = store.objects[first.stored.object_keys()[0]]
    assert stored == first.images[0] and metadata["provenance"] == "c2pa"  # the store holds the marked bytes

    hit = generate(service, REQUEST)
    assert hit.cache is CacheStatus.HIT and hit.images == first.images
    assert hit.provenance is Provenance.MARKED and len(marker.labels) == 1  # a hit signs nothing


def test_the_prompt_is_in_the_mark_only_where_the_tenant_opted_in(service, marker, tenants):
    private = make_tenant(tenants)
    shared = make_tenant(tenants, "open", "key-open", marks_prompt=True)
    generate(service, REQUEST, tenant=private, namespace="private")
    generate(service, REQUEST, tenant=shared, namespace="open")
    assert [label.prompt for label in marker.labels] == [None, "a red fox"]


def test_a_tenant_with_marks_off_gets_unmarked_images_and_no_signer_check(service, marker, tenants):
    plain = make_tenant(tenants, marks=False)
    result = generate(service, REQUEST, tenant=plain)
    assert result.provenance is Provenance.UNMARKED and not any(marked(image) for image in result.images)
    assert marker.labels == [] and marker.readiness_checks == 0


def test_without_a_marker_the_stack_marks_nothing(store, segmind, leases, clock):
    result = generate(GenerationService(store, segmind, leases, clock=clock, sleep=clock.sleep), REQUEST)
    assert result.provenance is Provenance.UNMARKED and not marked(result.images[0])


def test_a_signer_that_cannot_sign_refuses_before_anything_is_paid(service, marker, segmind, ledger, tenants):
    acme = make_tenant(tenants, budget_credits=1.0)
    marker.not_ready = True
    with pytest.raises(Unavailable) as refused:
        generate(service, REQUEST, tenant=acme, billing=TenantBilling(ledger, acme, 0.01, 1))
    assert refused.value.dependency is Dependency.SIGNING and "nothing was charged" in refused.value.message
    assert segmind.calls == [] and ledger.usage(acme.tenant_id).credits_committed == 0


def test_a_signer_failing_after_the_call_delivers_the_paid_images_unmarked_and_never_caches_them(
    service, marker, store
):
    marker.failing = True
    result = generate(service, REQUEST)
    assert result.provenance is Provenance.FAILED and result.images and not marked(result.images[0])
    assert result.stored is None and store.objects == {}
    marker.failing = False
    again = generate(service, REQUEST)
    assert again.cache is CacheStatus.MISS and again.provenance is Provenance.MARKED  # marked, then cached


def test_stored_images_say_whether_they_are_marked(service, store, segmind, leases, clock):
    generate(service, REQUEST)
    other = GenerationService(store, segmind, leases, clock=clock, sleep=clock.sleep)  # marking off since
    assert generate(other, REQUEST).provenance is Provenance.MARKED  # a hit tells what its bytes carry
