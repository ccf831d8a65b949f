"""Marking generated images as AI-generated: XMP written into the bytes as they are, then a C2PA manifest signed by a
KMS key (moto's), read back with c2pa's own Reader."""

import io
import json
import socket
import threading
from datetime import UTC, datetime, timedelta

import boto3
import c2pa
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from moto import mock_aws
from PIL import Image, PngImagePlugin

from admin.chains import make_local_chain
from segmind_proxy.adapters.c2pa_marks import (
    C2paMarker,
    KmsSigner,
    check_chain,
    csr_for_kms_key,
    kms_public_key,
    read_marks,
)
from segmind_proxy.adapters.xmp import ai_generated_xmp, digital_source_type, read_xmp, with_xmp
from segmind_proxy.domain.errors import Dependency, Outage
from segmind_proxy.domain.provenance import TRAINED_ALGORITHMIC_MEDIA, MarkLabel
from tests.support.aws import aws_failing

LABEL = MarkLabel(
    model="sd3.5-large-turbo", model_title="Stable Diffusion 3.5 Turbo", created_at="2026-12-01T10:00:00Z"
)
PROMPT = "a lighthouse at dusk, private to its tenant"


def picture(mode: str = "RGB") -> Image.Image:
    image = Image.effect_noise((48, 32), 70).convert(mode)
    if mode == "RGBA":
        image.putalpha(Image.linear_gradient("L").resize((48, 32)))
    return image


def encoded(image: Image.Image, kind: str, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, kind, **options)
    return out.getvalue()


IMAGES = {
    "jpeg": ("jpeg", encoded(picture(), "JPEG", quality=85)),
    "png": ("png", encoded(picture(), "PNG")),
    "webp-lossy": ("webp", encoded(picture(), "WEBP", quality=80)),
    "webp-lossless": ("webp", encoded(picture("RGBA"), "WEBP", lossless=True)),
    "webp-extended": ("webp", encoded(picture("RGBA"), "WEBP", quality=80)),
}


def test_the_webp_samples_are_the_layouts_they_are_named_for():
    assert IMAGES["webp-lossy"][1][12:16] == b"VP8 "
    assert IMAGES["webp-lossless"][1][12:16] == b"VP8L"
    assert IMAGES["webp-extended"][1][12:16] == b"VP8X"


@pytest.fixture(scope="module")
def signing():
    with mock_aws():
        kms = boto3.client("kms", region_name="us-east-1")
        key_id = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
        chain = make_local_chain(kms, key_id)
        marker = C2paMarker(KmsSigner(key_id, lambda: kms), chain)
        yield {"kms": kms, "key_id": key_id, "chain": chain, "marker": marker}


def pixels(data: bytes) -> tuple[str, tuple[int, int], bytes]:
    with Image.open(io.BytesIO(data)) as image:
        return image.mode, image.size, image.tobytes()


def active_manifest(data: bytes, media_type: str) -> tuple[dict, str]:
    with c2pa.Reader(media_type, io.BytesIO(data)) as reader:
        return reader.get_active_manifest(), reader.get_validation_state()


@pytest.mark.parametrize("sample", IMAGES)
def test_a_marked_image_keeps_its_pixels_and_says_it_was_generated(signing, sample):
    image_format, original = IMAGES[sample]
    marked = signing["marker"].mark(original, image_format, LABEL)

    assert pixels(marked) == pixels(original)  # nothing re-encoded: lossy formats decode to the very same pixels
    assert digital_source_type(read_xmp(marked)) == TRAINED_ALGORITHMIC_MEDIA
    manifest, state = active_manifest(marked, f"image/{image_format}")
    assert state == "Valid"  # a self-made chain: valid, not trusted
    (actions,) = [a["data"]["actions"] for a in manifest["assertions"] if a["label"].startswith("c2pa.actions")]
    assert actions[0]["action"] == "c2pa.created"
    assert actions[0]["digitalSourceType"] == TRAINED_ALGORITHMIC_MEDIA
    assert actions[0]["softwareAgent"]["name"] == LABEL.model_title
    assert manifest["claim_generator_info"][0]["name"] == LABEL.generator
    assert "thumbnail" not in manifest


def test_read_marks_reports_what_the_image_says(signing):
    marked = signing["marker"].mark(IMAGES["jpeg"][1], "jpeg", LABEL)
    marks = read_marks(marked)
    assert (marks.media_type, marks.xmp_source_type, marks.manifest_source_type) == (
        "image/jpeg",
        TRAINED_ALGORITHMIC_MEDIA,
        TRAINED_ALGORITHMIC_MEDIA,
    )
    assert (marks.model, marks.model_slug, marks.created_at) == (LABEL.model_title, LABEL.model, LABEL.created_at)
    assert (marks.signer, marks.signer_organization) == ("segmind-proxy (local) image signer", "segmind-proxy (local)")
    assert (marks.manifest, marks.valid, marks.problems) == (True, True, [])
    assert (marks.trusted, marks.signed_at) == (False, None)  # a self-made chain, no time-stamp authority


def test_the_chain_s_root_as_a_trust_anchor_makes_the_marks_trusted(signing):
    marked = signing["marker"].mark(IMAGES["png"][1], "png", LABEL)
    root = x509.load_pem_x509_certificates(signing["chain"])[-1].public_bytes(serialization.Encoding.PEM)
    marks = read_marks(marked, trust_anchors=root)
    assert (marks.valid, marks.trusted) == (True, True)


def image_data_offset(data: bytes, image_format: str) -> int:
    """Somewhere well inside the compressed pixels (never the manifest, never a header)."""
    if image_format == "jpeg":
        return data.index(b"\xff\xda") + 20
    if image_format == "png":
        return data.index(b"IDAT") + 10
    return max(data.find(b"VP8 "), data.find(b"VP8L")) + 16


@pytest.mark.parametrize("sample", ["jpeg", "png", "webp-lossy", "webp-lossless"])
def test_one_flipped_byte_in_the_image_data_invalidates_the_manifest(signing, sample):
    image_format, original = IMAGES[sample]
    marked = bytearray(signing["marker"].mark(original, image_format, LABEL))
    at = image_data_offset(bytes(marked), image_format)
    marked[at] ^= 0x01 if marked[at] != 0xFE else 0x02  # never a 0xFF, which would read as a JPEG marker
    marks = read_marks(bytes(marked))
    assert marks.manifest and not marks.valid
    assert "assertion.dataHash.mismatch" in marks.problems


def test_the_prompt_is_in_the_manifest_only_when_the_label_gives_it(signing):
    marker = signing["marker"]
    without = marker.mark(IMAGES["png"][1], "png", LABEL)
    assert read_marks(without).prompt is None
    assert PROMPT.encode() not in without

    with_prompt = marker.mark(IMAGES["png"][1], "png", MarkLabel(**{**LABEL.__dict__, "prompt": PROMPT}))
    marks = read_marks(with_prompt)
    assert (marks.prompt, marks.valid) == (PROMPT, True)
    assert PROMPT not in read_xmp(with_prompt)  # XMP is unsigned and read by everything: never the prompt


def test_an_image_without_marks_reads_as_such():
    marks = read_marks(IMAGES["webp-lossy"][1])
    assert (marks.media_type, marks.xmp_source_type, marks.manifest, marks.valid) == ("image/webp", None, False, False)


@pytest.mark.parametrize(
    "error",
    [
        EndpointConnectionError(endpoint_url="https://kms.example"),
        ClientError({"Error": {"Code": "DisabledException", "Message": "key is disabled"}}, "Sign"),
    ],
    ids=["unreachable", "disabled-key"],
)
def test_a_signature_kms_cannot_make_is_a_signing_outage(signing, monkeypatch, error):
    aws_failing(monkeypatch, "Sign", error=error)
    with pytest.raises(Outage) as caught:
        signing["marker"].mark(IMAGES["jpeg"][1], "jpeg", LABEL)
    assert caught.value.dependency is Dependency.SIGNING
    assert caught.value.__cause__ is error


def test_a_time_stamp_authority_out_of_reach_is_a_signing_outage(signing):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    marker = C2paMarker(
        KmsSigner(signing["key_id"], lambda: signing["kms"]), signing["chain"], f"http://127.0.0.1:{port}/"
    )
    with pytest.raises(Outage) as caught:
        marker.mark(IMAGES["png"][1], "png", LABEL)
    assert isinstance(caught.value.__cause__, c2pa.C2paError)


def test_a_certificate_for_another_key_is_a_fault_not_an_outage(signing):
    other = ec.generate_private_key(ec.SECP256R1())
    marker = C2paMarker(lambda data: other.sign(data, ec.ECDSA(hashes.SHA256())), signing["chain"])
    with pytest.raises(c2pa.C2paError, match="does not match"):
        marker.mark(IMAGES["png"][1], "png", LABEL)


def test_a_fault_in_the_signer_itself_is_raised_as_it_is(signing):
    def broken(data: bytes) -> bytes:
        raise KeyError("a bug, not an outage")

    with pytest.raises(KeyError, match="a bug"):
        C2paMarker(broken, signing["chain"]).mark(IMAGES["png"][1], "png", LABEL)


def test_one_marker_signs_from_many_threads_at_once(signing):
    results: list[bytes] = []

    def mark() -> None:
        for _ in range(3):
            results.append(signing["marker"].mark(IMAGES["jpeg"][1], "jpeg", LABEL))

    threads = [threading.Thread(target=mark) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 12
    assert all(read_marks(result).valid for result in results)


def test_large_claims_are_signed_as_a_digest():
    calls = []

    class Client:
        def sign(self, **call):
            calls.append(call)
            return {"Signature": b"der"}

    signer = KmsSigner("key", Client)
    signer(b"x" * 4096)
    signer(b"x" * 4097)
    assert [(c["MessageType"], len(c["Message"])) for c in calls] == [("RAW", 4096), ("DIGEST", 32)]


# Marks already there are kept.


def xmp_packet(tool: str) -> bytes:
    return (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        f'<rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:CreatorTool="{tool}"/>'
        "</rdf:RDF></x:xmpmeta>"
    ).encode()


def with_own_xmp(image_format: str) -> bytes:
    packet = xmp_packet("upstream tool")
    if image_format == "png":
        info = PngImagePlugin.PngInfo()
        info.add_itxt("XML:com.adobe.xmp", packet.decode())
        return encoded(picture(), "PNG", pnginfo=info)
    return encoded(picture(), image_format.upper(), xmp=packet)


@pytest.mark.parametrize("image_format", ["jpeg", "png", "webp"])
def test_an_image_with_its_own_xmp_keeps_that_packet(signing, image_format):
    original = with_own_xmp(image_format)
    assert with_xmp(original, image_format, ai_generated_xmp(LABEL)) == original
    marked = signing["marker"].mark(original, image_format, LABEL)
    assert 'CreatorTool="upstream tool"' in read_xmp(marked)
    marks = read_marks(marked)
    assert (marks.manifest_source_type, marks.valid) == (TRAINED_ALGORITHMIC_MEDIA, True)


def test_an_image_with_a_manifest_keeps_it_as_its_parent(signing):
    upstream = signing["marker"].mark(IMAGES["jpeg"][1], "jpeg", MarkLabel(**{**LABEL.__dict__, "model": "upstream"}))
    marked = signing["marker"].mark(upstream, "jpeg", LABEL)
    with c2pa.Reader("image/jpeg", io.BytesIO(marked)) as reader:
        store = json.loads(reader.json())
    assert len(store["manifests"]) == 2
    marks = read_marks(marked)
    assert (marks.valid, marks.model_slug, marks.manifest_source_type) == (True, LABEL.model, TRAINED_ALGORITHMIC_MEDIA)


# XMP on its own.


def test_the_xmp_packet_escapes_its_values():
    label = MarkLabel(model="m<1>", model_title='A & "B"\x01', created_at="2026-12-01T10:00:00Z")
    packet = ai_generated_xmp(label).decode()
    assert '(A &amp; "B", m&lt;1&gt;)' in packet
    assert digital_source_type(packet) == TRAINED_ALGORITHMIC_MEDIA


@pytest.mark.parametrize(
    ("image", "image_format"),
    [
        (b"not an image", "png"),
        (IMAGES["jpeg"][1], "png"),
        (IMAGES["png"][1], "gif"),
        (IMAGES["png"][1][:40] + IMAGES["png"][1][-12:], "png"),
        (IMAGES["jpeg"][1][:30] + b"\xff\xd9", "jpeg"),
    ],
    ids=["no-image", "another-format", "unknown-format", "cut-png", "cut-jpeg"],
)
def test_with_xmp_refuses_what_is_not_a_whole_image_of_the_format(image, image_format):
    with pytest.raises(ValueError, match=r"not a whole|image format"):
        with_xmp(image, image_format, ai_generated_xmp(LABEL))


def test_digital_source_type_reads_the_attribute_form_and_not_garbage():
    packet = xmp_packet("x").replace(
        b'xmp:CreatorTool="x"',
        f'xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" '
        f'Iptc4xmpExt:DigitalSourceType="{TRAINED_ALGORITHMIC_MEDIA}"'.encode(),
    )
    assert digital_source_type(packet.decode()) == TRAINED_ALGORITHMIC_MEDIA
    assert digital_source_type("<not xml") is None


# The certificate chain and the CSR.


def certificate(key, issuer_key, *, ca=False, digital_signature=True, usages=None, aki=True, days=30):
    now = datetime.now(UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test")])
    usage = x509.KeyUsage(digital_signature, False, False, False, False, ca, ca, False, False)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages or [ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
    )
    if aki:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def spki(key) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def test_check_chain_accepts_the_chain_for_the_kms_key(signing):
    check_chain(signing["chain"], kms_public_key(signing["kms"], signing["key_id"]))


def test_check_chain_refuses_a_chain_for_another_key(signing):
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(ValueError, match="another key"):
        check_chain(signing["chain"], spki(other))


def test_check_chain_refuses_a_chain_that_has_expired(signing):
    key = kms_public_key(signing["kms"], signing["key_id"])
    with pytest.raises(ValueError, match="expired"):
        check_chain(signing["chain"], key, now=datetime.now(UTC) + timedelta(days=400))


def test_check_chain_refuses_what_is_not_pem():
    with pytest.raises(ValueError, match="not PEM"):
        check_chain(b"-----BEGIN NOTHING-----", b"")


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"ca": True}, "CA certificate"),
        ({"digital_signature": False}, "digitalSignature"),
        ({"usages": [ExtendedKeyUsageOID.SERVER_AUTH]}, "extended key usage"),
        ({"usages": [ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE]}, "extended key usage"),
        ({"aki": False}, "authority key identifier"),
    ],
)
def test_check_chain_refuses_a_certificate_c2pa_cannot_sign_with(options, problem):
    key, root = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(ValueError, match=problem):
        check_chain(certificate(key, root, **options), spki(key))


def test_check_chain_refuses_a_key_es256_cannot_sign_with():
    key = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(ValueError, match="not EC P-256"):
        check_chain(certificate(key, key), spki(key))


def test_check_chain_refuses_a_chain_out_of_order():
    key, root, stranger = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    chain = certificate(key, root) + certificate(stranger, stranger, ca=True, digital_signature=False)
    with pytest.raises(ValueError, match="did not issue"):
        check_chain(chain, spki(key))


def test_the_csr_is_signed_by_the_kms_key_and_names_it(signing):
    pem = csr_for_kms_key(signing["kms"], signing["key_id"], {"CN": "segmind-proxy signer", "O": "Example Ltd"})
    request = x509.load_pem_x509_csr(pem)
    assert request.is_signature_valid
    assert spki(request) == kms_public_key(signing["kms"], signing["key_id"])
    assert request.subject.rfc4514_string() == "O=Example Ltd,CN=segmind-proxy signer"
    usages = request.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.EMAIL_PROTECTION in usages


def test_the_csr_refuses_a_subject_it_cannot_name(signing):
    with pytest.raises(ValueError, match="subject names"):
        csr_for_kms_key(signing["kms"], signing["key_id"], {"commonName": "x"})
