"""A self-made certificate chain for the KMS signing key: a throwaway root CA and, issued by it, a C2PA claim signing
certificate for the KMS key's public key. The local stack makes one at start; an operator can install one with
`segmind-proxy provenance self-sign` until a CA issues a real one. Readers call its marks valid but untrusted (trusted
only where its root is given as a trust anchor): no CA on the C2PA trust list stands behind it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from segmind_proxy.adapters.c2pa_marks import key_usage, kms_public_key

LOCAL = "segmind-proxy (local)"


def _name(common_name: str, organization: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
        ]
    )


VALIDITY = timedelta(days=365)
_BACKDATE = timedelta(minutes=5)  # a clock a little behind the one that made the chain still finds it valid


def make_local_chain(kms_client: Any, key_id: str, *, organization: str = LOCAL, now: datetime | None = None) -> bytes:
    """The signing certificate for the KMS key and the root CA that issued it, as PEM (signing certificate first).
    The root's private key is dropped once it has signed: nothing else is ever issued under it."""
    start = (now or datetime.now(UTC)) - _BACKDATE
    root_key = ec.generate_private_key(ec.SECP256R1())
    root_name = _name(f"{organization} root CA", organization)
    root = _root(root_key, root_name, start)
    signer_key = serialization.load_der_public_key(kms_public_key(kms_client, key_id))
    if not isinstance(signer_key, ec.EllipticCurvePublicKey):
        raise ValueError("the KMS key is not an elliptic-curve key (ECC_NIST_P256)")
    signer = _signer(signer_key, _name(f"{organization} image signer", organization), root, root_key, start)
    return b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in (signer, root))


def _root(root_key: ec.EllipticCurvePrivateKey, name: x509.Name, start: datetime) -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(key_usage(signs_certificates=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False)
        .sign(root_key, hashes.SHA256())
    )


def _signer(
    signer_key: ec.EllipticCurvePublicKey,
    name: x509.Name,
    root: x509.Certificate,
    root_key: ec.EllipticCurvePrivateKey,
    start: datetime,
) -> x509.Certificate:
    # emailProtection: the one claim signing usage c2pa-rs's default settings accept (see adapters/c2pa_marks.py).
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(root.subject)
        .public_key(signer_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(key_usage(signs_certificates=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(signer_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False)
        .sign(root_key, hashes.SHA256())
    )
