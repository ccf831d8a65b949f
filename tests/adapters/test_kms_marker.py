"""The deployed stack's marker (KMS key + chain in Secrets Manager, under moto) and its fake agree on readiness: not
ready without a chain, nor with a chain of another key (so a miss is refused before it is paid for); ready, and
marking, once the key's own chain is installed; a failed check is not repeated on every miss."""

from __future__ import annotations

import io

import boto3
import pytest
from PIL import Image

from admin.chains import make_local_chain
from segmind_proxy.adapters.c2pa_marks import read_marks
from segmind_proxy.adapters.provenance import CHAIN_PLACEHOLDER, RECHECK_SECONDS, KmsMarker
from segmind_proxy.domain.errors import Dependency, Outage
from segmind_proxy.domain.provenance import MarkLabel
from tests.fakes import FakeClock
from tests.fakes.provenance import FakeMarker

LABEL = MarkLabel("flux-schnell", "FLUX.1 Schnell", "2026-12-04T10:00:00+00:00")
SECRET = "stack/provenance-chain"


def jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (16, 16), "teal").save(out, "JPEG")
    return out.getvalue()


@pytest.fixture
def keys(aws):
    kms = boto3.client("kms")
    key = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    other = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    secrets = boto3.client("secretsmanager")
    secrets.create_secret(Name=SECRET, SecretString=CHAIN_PLACEHOLDER)
    return kms, key, other, secrets


def install(secrets, chain: bytes) -> None:
    secrets.put_secret_value(SecretId=SECRET, SecretString=chain.decode())


def kms_marker(keys, clock) -> KmsMarker:
    kms, key, _, _ = keys
    return KmsMarker(key, SECRET, client=lambda: kms, clock=clock)


@pytest.fixture(params=["fake", "adapter"])
def unready(request):
    """A marker with no usable chain, each way."""
    if request.param == "fake":
        fake = FakeMarker()
        fake.not_ready = True
        return fake
    return kms_marker(request.getfixturevalue("keys"), FakeClock())


def test_a_marker_without_a_usable_chain_is_not_ready(unready):
    with pytest.raises(Outage) as outage:
        unready.ready()
    assert outage.value.dependency is Dependency.SIGNING
    with pytest.raises(Outage):
        unready.mark(jpeg(), "jpeg", LABEL)


def test_the_placeholder_says_how_to_install_a_chain(keys):
    with pytest.raises(Outage) as outage:
        kms_marker(keys, FakeClock()).ready()
    assert "provenance install-chain" in str(outage.value.__cause__)


def test_a_chain_of_another_key_is_refused_naming_the_problem(keys):
    kms, _, other, secrets = keys
    install(secrets, make_local_chain(kms, other))
    with pytest.raises(Outage) as outage:
        kms_marker(keys, FakeClock()).ready()
    assert "for another key than the signing key" in str(outage.value.__cause__)


def test_with_the_keys_own_chain_it_marks_and_a_failed_check_waits_before_the_next(keys):
    kms, key, _, secrets = keys
    clock = FakeClock()
    marker = kms_marker(keys, clock)
    with pytest.raises(Outage):
        marker.ready()
    install(secrets, make_local_chain(kms, key))
    with pytest.raises(Outage):  # the failed check stands for a while: a misconfigured stack costs no calls per miss
        marker.ready()
    clock.sleep(RECHECK_SECONDS)
    marker.ready()
    marks = read_marks(marker.mark(jpeg(), "jpeg", LABEL))
    assert (marks.valid, marks.model_slug) == (True, "flux-schnell")
