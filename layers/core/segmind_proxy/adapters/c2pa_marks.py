"""Content Credentials for generated images: the IPTC digital source type in XMP (adapters/xmp.py), then a C2PA
manifest saying a trained model created the image, signed by an AWS KMS key whose private half never leaves KMS.
c2pa-python (ctypes over c2pa-rs) writes and reads the manifests; `cryptography` checks the certificate chain.

The C2PA library asks for a signature over each claim (about 1.5 KB, whatever the image's size) through a callback;
KMS signs it (ECDSA P-256, SHA-256: C2PA's ES256). The library converts KMS's DER signature into COSE's raw r||s
itself (checked: the raw form is what lands in the manifest)."""

from __future__ import annotations

import hashlib
import io
import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import c2pa

from segmind_proxy.adapters.aws_clients import kms, outage_of
from segmind_proxy.adapters.xmp import ai_generated_xmp, digital_source_type, read_xmp, with_xmp
from segmind_proxy.domain.errors import Dependency, Outage
from segmind_proxy.domain.image_formats import MEDIA_TYPES, sniff_format
from segmind_proxy.domain.provenance import TRAINED_ALGORITHMIC_MEDIA, MarkLabel

if TYPE_CHECKING:
    from cryptography.x509 import Certificate, CertificateSigningRequest

# The extended key usages C2PA accepts on a claim signing certificate. c2pa-rs's own default list holds only
# emailProtection: a reader left at its defaults calls a documentSigning-only or claimSigning-only certificate
# invalid, which is why the chain made here (and asked for in a CSR) carries emailProtection too.
EMAIL_PROTECTION = "1.3.6.1.5.5.7.3.4"
DOCUMENT_SIGNING = "1.3.6.1.5.5.7.3.36"
C2PA_CLAIM_SIGNING = "1.3.6.1.4.1.62558.2.1"
SIGNING_USAGES = (EMAIL_PROTECTION, DOCUMENT_SIGNING, C2PA_CLAIM_SIGNING)

SLUG_KEY = "segmind_model"  # the model's slug, beside its display name in the action's softwareAgent
_PARENT = "upstream"  # an existing manifest's ingredient, as the opening action names it
_KMS_RAW_LIMIT = 4096  # KMS signs a RAW message up to this size; a larger one is sent as its SHA-256 digest
_TRUST_CONFIG = "".join(f"{usage}\n" for usage in SIGNING_USAGES)
# Never fetch anything while reading or signing: a manifest can name a remote store, and an upstream image's
# manifest is not ours to follow (latency, and a request to wherever it points).
_OFFLINE = {"remote_manifest_fetch": False, "ocsp_fetch": False}
# No thumbnail: c2pa-rs embeds one by default, decoding and re-encoding the image (on a 1024x1024 JPEG, 70 ms and
# up to hundreds of KB); the image itself is what the manifest is about.
_SIGNING_SETTINGS = {"builder": {"thumbnail": {"enabled": False}}, "trust": {"trust_config": _TRUST_CONFIG}}
# How c2pa-rs says the time-stamp authority could not be reached (a C2paError.Signature, like a bad signature).
_TSA_UNREACHABLE = "underlying http resolver"
_UNTRUSTED = frozenset({"signingCredential.untrusted", "timeStamp.untrusted"})  # trust, not integrity


class KmsSigner:
    """Signs what the C2PA library hands over with a KMS key (ECC_NIST_P256, SIGN_VERIFY), returning KMS's DER
    signature. Raises Outage(SIGNING) where KMS cannot be reached or refuses (a disabled key, throttling)."""

    def __init__(self, key_id: str, client_factory: Callable[[], Any] = kms) -> None:
        self.key_id = key_id
        self._client = client_factory

    def __call__(self, data: bytes) -> bytes:
        message, kind = (data, "RAW") if len(data) <= _KMS_RAW_LIMIT else (hashlib.sha256(data).digest(), "DIGEST")
        with outage_of(Dependency.SIGNING):
            answer = self._client().sign(
                KeyId=self.key_id, Message=message, MessageType=kind, SigningAlgorithm="ECDSA_SHA_256"
            )
        return bytes(answer["Signature"])


def kms_public_key(kms_client: Any, key_id: str) -> bytes:
    """The KMS key's public key as SubjectPublicKeyInfo DER."""
    with outage_of(Dependency.SIGNING):
        return bytes(kms_client.get_public_key(KeyId=key_id)["PublicKey"])


class C2paMarker:
    """The `Marker` port: XMP first, then a signed C2PA manifest, written into the image's bytes without re-encoding
    its pixels. One c2pa Signer and one settings Context serve every image (and every thread): only the manifest,
    which names the image's own model and time, is built per image."""

    def __init__(self, sign: Callable[[bytes], bytes], chain_pem: bytes, tsa_url: str | None = None) -> None:
        self._sign = sign
        self._tsa_url = tsa_url
        # c2pa-python catches what the callback raises (it logs it and tells c2pa-rs the signature failed), so the
        # callback keeps it here, per thread, for `mark` to raise again.
        self._failure = threading.local()
        self._signer = c2pa.Signer.from_callback(self._callback, c2pa.C2paSigningAlg.ES256, chain_pem.decode(), tsa_url)
        self._context = c2pa.Context.from_dict({**_SIGNING_SETTINGS, "verify": _OFFLINE})

    def _callback(self, data: bytes) -> bytes:
        try:
            return self._sign(data)
        except BaseException as exc:
            self._failure.error = exc
            raise

    def mark(self, image: bytes, image_format: str, label: MarkLabel) -> bytes:
        """The marked image. Raises ValueError for bytes that are not a whole image of `image_format`, and
        Outage(SIGNING) where the signature could not be made (KMS, or the time-stamp authority, out of reach); any
        other C2PA failure (a chain that does not match the key, say) is a fault, raised as the library's C2paError."""
        media_type = MEDIA_TYPES.get(image_format, "")
        marked = with_xmp(image, image_format, ai_generated_xmp(label))
        parent = self._has_manifest(media_type, marked)
        builder = c2pa.Builder(manifest_definition(label, media_type, parent=parent), self._context)
        if parent:
            # Never strip an existing manifest: signing replaces the image's manifest store, so the one already
            # there goes in as the parent ingredient, which keeps it (and its own signature) in the store.
            ingredient = {"title": "upstream image", "relationship": "parentOf", "label": _PARENT}
            builder.add_ingredient_from_stream(ingredient, media_type, io.BytesIO(marked))
        return self._signed(builder, media_type, marked)

    def _has_manifest(self, media_type: str, image: bytes) -> bool:
        try:
            reader = c2pa.Reader.try_create(media_type, io.BytesIO(image), None, self._context)
        except c2pa.C2paError:
            return False  # a store the library cannot read cannot be carried either: the new manifest replaces it
        if reader is None:
            return False
        reader.close()
        return True

    def _signed(self, builder: c2pa.Builder, media_type: str, image: bytes) -> bytes:
        self._failure.error = None
        signed = io.BytesIO()
        try:
            builder.sign(self._signer, media_type, io.BytesIO(image), signed)
        except c2pa.C2paError as exc:
            failure, self._failure.error = self._failure.error, None
            if failure is not None:
                raise failure from failure.__cause__  # as the signer raised it (an Outage: KMS's error its cause)
            if self._tsa_url and _TSA_UNREACHABLE in str(exc):
                raise Outage(Dependency.SIGNING) from exc
            raise
        return signed.getvalue()


def manifest_definition(label: MarkLabel, media_type: str, *, parent: bool = False) -> dict[str, Any]:
    """The manifest c2pa-rs builds and signs: one `c2pa.created` action (or `c2pa.opened`, where the image already
    had a manifest, kept as its parent) with the IPTC digital source type and the model as its software agent. The
    prompt, only where the tenant opted in, is the action's `description` (a field C2PA 2.x defines on actions)."""
    action: dict[str, Any] = {
        "action": "c2pa.opened" if parent else "c2pa.created",
        "when": label.created_at,
        "softwareAgent": {"name": label.model_title, SLUG_KEY: label.model},
        "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA,
    }
    if parent:
        action["parameters"] = {"ingredientIds": [_PARENT]}
    if label.prompt is not None:
        action["description"] = label.prompt
    return {
        "claim_generator_info": [{"name": label.generator, "version": label.generator_version}],
        "title": f"{label.model_title} image",
        "format": media_type,
        "assertions": [{"label": "c2pa.actions", "data": {"actions": [action]}}],
    }


# Reading marks back: for tests, the admin CLI and anyone checking what the gateway served.


@dataclass(frozen=True)
class Marks:
    """What an image says of itself. `valid`: a manifest whose data hash and signature hold (a self-made or private
    CA's certificate still counts: `trusted` says whether the chain reached a trust anchor). `problems`: the failing
    validation codes, trust aside."""

    media_type: str
    xmp_source_type: str | None = None
    manifest: bool = False
    manifest_source_type: str | None = None
    model: str | None = None
    model_slug: str | None = None
    created_at: str | None = None
    prompt: str | None = None
    signer: str | None = None  # the signing certificate's common name
    signer_organization: str | None = None  # its organization (c2pa-rs reports it as `issuer`)
    signed_at: str | None = None  # a time-stamp authority's time, where the manifest has one
    signer_serial: str | None = None  # the signing certificate's serial number (decimal), to match against a chain
    valid: bool = False
    trusted: bool = False
    problems: list[str] = field(default_factory=list)


def read_marks(image: bytes, *, trust_anchors: bytes | None = None) -> Marks:
    """The marks an image carries. `trust_anchors`: PEM root certificates to trust beyond none (a local CA, say).
    Raises ValueError for bytes that are not a whole JPEG, PNG or WebP image."""
    image_format = sniff_format(image)
    if image_format is None:
        raise ValueError("not a whole JPEG, PNG or WebP image")
    media_type = MEDIA_TYPES[image_format]
    xmp = read_xmp(image)
    base = Marks(media_type=media_type, xmp_source_type=digital_source_type(xmp) if xmp else None)
    try:
        reader = c2pa.Reader.try_create(media_type, io.BytesIO(image), None, _reading_context(trust_anchors))
    except c2pa.C2paError as exc:
        return replace(base, manifest=True, problems=[str(exc)])
    if reader is None:
        return base
    with reader:
        return _from_store(base, reader.get_active_manifest() or {}, reader.get_validation_state(), reader)


@lru_cache(maxsize=4)
def _reading_context(trust_anchors: bytes | None) -> c2pa.Context:
    trust = {"trust_config": _TRUST_CONFIG} | ({"user_anchors": trust_anchors.decode()} if trust_anchors else {})
    return c2pa.Context.from_dict({"trust": trust, "verify": _OFFLINE})


def _from_store(base: Marks, manifest: dict[str, Any], state: str | None, reader: c2pa.Reader) -> Marks:
    action = _first_action(manifest)
    agent = action.get("softwareAgent")
    agent = agent if isinstance(agent, dict) else {"name": agent}
    signature = manifest.get("signature_info") or {}
    results = (reader.get_validation_results() or {}).get("activeManifest") or {}
    problems = [item["code"] for item in results.get("failure", []) if item.get("code") not in _UNTRUSTED]
    return replace(
        base,
        manifest=True,
        problems=problems,
        manifest_source_type=action.get("digitalSourceType"),
        model=agent.get("name"),
        model_slug=agent.get(SLUG_KEY),
        created_at=action.get("when"),
        prompt=action.get("description"),
        signer=signature.get("common_name"),
        signer_organization=signature.get("issuer"),
        signed_at=signature.get("time"),
        signer_serial=signature.get("cert_serial_number"),
        valid=state in ("Valid", "Trusted") and not problems,
        trusted=state == "Trusted",
    )


def _first_action(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest's opening action (`c2pa.created` or `c2pa.opened`), or {} where it has none."""
    for assertion in manifest.get("assertions", []):
        if assertion.get("label") in ("c2pa.actions", "c2pa.actions.v2"):
            for action in assertion.get("data", {}).get("actions", []):
                if action.get("action") in ("c2pa.created", "c2pa.opened"):
                    return action
    return {}


# The certificate chain, checked before the first image is signed so that a wrong one fails at start-up with a reason,
# and a CSR for the KMS key. `cryptography` is imported where it is used: it adds about 45 ms to a cold start, and
# marking never needs it.


def check_chain(chain_pem: bytes, public_key_der: bytes, *, now: datetime | None = None) -> None:
    """Raises ValueError, naming the problem, unless `chain_pem` is a PEM chain whose first certificate holds
    `public_key_der` (SubjectPublicKeyInfo DER, as KMS's GetPublicKey returns it) and can sign C2PA claims: EC P-256,
    not a CA, digitalSignature key usage, an extended key usage C2PA accepts, an authority key identifier, valid now,
    and each certificate issued by the next."""
    from cryptography import x509

    try:
        chain = x509.load_pem_x509_certificates(chain_pem)
    except ValueError as exc:
        raise ValueError(f"the certificate chain is not PEM certificates: {exc}") from None
    leaf = chain[0]
    _check_key(leaf, public_key_der)
    _check_usage(leaf)
    _check_dates(leaf, now or datetime.now(UTC))
    _check_issuers(chain)


def _p256(key: Any) -> bool:
    from cryptography.hazmat.primitives.asymmetric import ec

    return isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1)


def _spki(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _check_key(leaf: Certificate, public_key_der: bytes) -> None:
    from cryptography.hazmat.primitives import serialization

    if not _p256(leaf.public_key()):
        raise ValueError("the signing certificate's key is not EC P-256 (ES256, what the KMS key signs with)")
    try:
        expected = serialization.load_der_public_key(public_key_der)
    except ValueError:
        raise ValueError("the signing key's public key is not SubjectPublicKeyInfo DER") from None
    if _spki(leaf.public_key()) != _spki(expected):
        raise ValueError("the signing certificate (the chain's first) is for another key than the signing key's")


def _extension(leaf: Certificate, kind: type) -> Any:
    from cryptography import x509

    try:
        return leaf.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def _check_usage(leaf: Certificate) -> None:
    from cryptography import x509

    constraints = _extension(leaf, x509.BasicConstraints)
    if constraints is not None and constraints.ca:
        raise ValueError("the signing certificate is a CA certificate; C2PA signs with an end-entity certificate")
    usage = _extension(leaf, x509.KeyUsage)
    if usage is None or not usage.digital_signature:
        raise ValueError("the signing certificate lacks the digitalSignature key usage")
    extended = _extension(leaf, x509.ExtendedKeyUsage)
    if extended is None or not any(oid.dotted_string in SIGNING_USAGES for oid in extended):
        raise ValueError(
            f"the signing certificate has no extended key usage C2PA accepts (one of {', '.join(SIGNING_USAGES)})"
        )
    if _extension(leaf, x509.AuthorityKeyIdentifier) is None:
        raise ValueError("the signing certificate lacks an authority key identifier")


def _check_dates(leaf: Certificate, now: datetime) -> None:
    if now < leaf.not_valid_before_utc:
        raise ValueError(f"the signing certificate is not valid before {leaf.not_valid_before_utc.isoformat()}")
    if now > leaf.not_valid_after_utc:
        raise ValueError(f"the signing certificate expired on {leaf.not_valid_after_utc.isoformat()}")


def _check_issuers(chain: list[Certificate]) -> None:
    from cryptography.exceptions import InvalidSignature

    for position, (certificate, issuer) in enumerate(itertools.pairwise(chain), start=1):
        try:
            certificate.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature):
            raise ValueError(
                f"the chain's certificate {position + 1} did not issue certificate {position} (the chain must run "
                "from the signing certificate up to its root)"
            ) from None


# RDN short names a CSR's subject may use, to their OIDs.
_SUBJECT_NAMES = {
    "CN": "2.5.4.3",
    "O": "2.5.4.10",
    "OU": "2.5.4.11",
    "C": "2.5.4.6",
    "ST": "2.5.4.8",
    "L": "2.5.4.7",
    "EMAILADDRESS": "1.2.840.113549.1.9.1",
}


def csr_for_kms_key(kms_client: Any, key_id: str, subject: dict[str, str]) -> bytes:
    """A PEM certificate signing request for the KMS key, signed by it (its private key never leaves KMS), asking
    for what a C2PA claim signing certificate needs. `subject`: RDN short names (CN, O, OU, C, ST, L, emailAddress)
    to values. `cryptography` signs requests only with keys it holds, so it writes one with a throwaway key, and the
    request's body is put together again around the KMS key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    public_key_der = kms_public_key(kms_client, key_id)
    if not _p256(serialization.load_der_public_key(public_key_der)):
        raise ValueError("the KMS key is not ECC_NIST_P256")
    template = _template_request(subject)
    version, name, _, attributes = _der_children(template.tbs_certrequest_bytes)
    info = _der(0x30, version + name + public_key_der + attributes)
    with outage_of(Dependency.SIGNING):
        answer = kms_client.sign(KeyId=key_id, Message=info, MessageType="RAW", SigningAlgorithm="ECDSA_SHA_256")
    algorithm = _der_children(template.public_bytes(serialization.Encoding.DER))[1]  # ecdsa-with-SHA256
    signature = _der(0x03, b"\x00" + bytes(answer["Signature"]))  # a BIT STRING with no unused bits
    request = x509.load_der_x509_csr(_der(0x30, info + algorithm + signature))
    if not request.is_signature_valid:
        raise ValueError("KMS's signature does not verify with the key's public key")
    return request.public_bytes(serialization.Encoding.PEM)


def key_usage(*, signs_certificates: bool) -> Any:
    """The key usage extension of a claim signing certificate (digitalSignature, as C2PA requires), or of the CA that
    issues one (keyCertSign and cRLSign)."""
    from cryptography import x509

    return x509.KeyUsage(
        digital_signature=not signs_certificates,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=signs_certificates,
        crl_sign=signs_certificates,
        encipher_only=False,
        decipher_only=False,
    )


def _template_request(subject: dict[str, str]) -> CertificateSigningRequest:
    """A request with the subject and extensions asked for, signed by a throwaway key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    unknown = sorted(name for name in subject if name.upper() not in _SUBJECT_NAMES)
    if unknown or not subject:
        raise ValueError(f"subject names must be among {', '.join(_SUBJECT_NAMES)} (got {unknown or 'none'})")
    name = x509.Name(
        [
            x509.NameAttribute(x509.ObjectIdentifier(_SUBJECT_NAMES[key.upper()]), value)
            for key, value in subject.items()
        ]
    )
    usage = key_usage(signs_certificates=False)
    usages = x509.ExtendedKeyUsage([x509.ObjectIdentifier(oid) for oid in SIGNING_USAGES])
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(name)
        .add_extension(usage, critical=True)
        .add_extension(usages, critical=False)
        .sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
    )


def _der(tag: int, content: bytes) -> bytes:
    """One DER element: tag, definite length, content."""
    size = len(content)
    if size < 0x80:
        return bytes([tag, size]) + content
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(length)]) + length + content


def _der_children(element: bytes) -> list[bytes]:
    """The encoded elements inside one DER SEQUENCE."""
    _, at, end = _der_header(element, 0)
    children = []
    while at < end:
        _, _, child_end = _der_header(element, at)
        children.append(element[at:child_end])
        at = child_end
    return children


def _der_header(data: bytes, at: int) -> tuple[int, int, int]:
    """(tag, where the content starts, where it ends) of the DER element at `at`."""
    tag, length = data[at], data[at + 1]
    at += 2
    if length & 0x80:
        count = length & 0x7F
        length = int.from_bytes(data[at : at + count], "big")
        at += count
    return tag, at, at + length
