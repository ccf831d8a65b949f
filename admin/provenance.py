"""The provenance key's certificate, for an operator: a certificate signing request signed by the KMS key (its
private key never leaves KMS), installing the chain a CA returns (refused unless it is the key's own), a self-made
chain until then, and reading what an image's marks say (`verify`, which needs no stack)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509

from segmind_proxy.adapters.c2pa_marks import check_chain, csr_for_kms_key, kms_public_key, read_marks
from segmind_proxy.adapters.provenance import CHAIN_PLACEHOLDER
from segmind_proxy.domain.provenance import TRAINED_ALGORITHMIC_MEDIA

from .chains import make_local_chain
from .service import AdminError, StackRefs

SUBJECT_KEYS = ("CN", "O", "OU", "C", "ST", "L", "emailAddress")


def parse_subject(text: str) -> dict[str, str]:
    """`CN=Acme images,O=Acme Ltd,C=DE` as the CSR's subject."""
    subject: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or key.strip() not in SUBJECT_KEYS or not value.strip():
            raise AdminError(f"Subject part '{part}' is not KEY=value with KEY one of {', '.join(SUBJECT_KEYS)}")
        subject[key.strip()] = value.strip()
    if "CN" not in subject:
        raise AdminError("The subject needs a common name: CN=...")
    return subject


class ProvenanceAdmin:
    def __init__(self, refs: StackRefs, kms: Any, secrets: Any) -> None:
        if not (refs.provenance_key_id and refs.provenance_chain_secret):
            raise AdminError(f"Stack '{refs.stack_name}' has no provenance key: deploy this version of the gateway")
        self.refs, self.kms, self.secrets = refs, kms, secrets

    def csr(self, subject: str) -> str:
        """A PEM certificate signing request for the stack's key, to send to a CA."""
        return csr_for_kms_key(self.kms, self.refs.provenance_key_id, parse_subject(subject)).decode()

    def install_chain(self, pem: bytes) -> dict[str, Any]:
        """Install a chain (signing certificate first, then its issuers), refused unless it is the key's own and
        usable for C2PA; the functions read it on their next cold start (or within 30 s of a refused one)."""
        try:
            check_chain(pem, kms_public_key(self.kms, self.refs.provenance_key_id))
        except ValueError as exc:
            raise AdminError(f"Chain refused: {exc}") from None
        self.secrets.put_secret_value(SecretId=self.refs.provenance_chain_secret, SecretString=pem.decode())
        return self.show()

    def self_sign(self) -> dict[str, Any]:
        """A self-made chain (valid but untrusted in public verifiers), installed: marks work now, a CA's chain later."""
        return self.install_chain(
            make_local_chain(self.kms, self.refs.provenance_key_id, organization=self.refs.stack_name)
        )

    def signer_serial(self) -> str | None:
        """The installed signing certificate's serial number (decimal), if a chain of the stack's key is installed."""
        shown = self.show()
        return shown.get("serial") if shown.get("usable") else None

    def show(self) -> dict[str, Any]:
        text = self.secrets.get_secret_value(SecretId=self.refs.provenance_chain_secret)["SecretString"]
        shown: dict[str, Any] = {"key_id": self.refs.provenance_key_id, "chain_installed": False}
        if not text.strip() or text.strip() == CHAIN_PLACEHOLDER:
            return shown
        leaf = x509.load_pem_x509_certificates(text.encode())[0]
        try:
            check_chain(text.encode(), kms_public_key(self.kms, self.refs.provenance_key_id))
            problem = None
        except ValueError as exc:
            problem = str(exc)
        return shown | {
            "chain_installed": True,
            "signer": leaf.subject.rfc4514_string(),
            "issuer": leaf.issuer.rfc4514_string(),
            "expires": leaf.not_valid_after_utc.isoformat(),
            "serial": str(leaf.serial_number),
            "usable": problem is None,
            **({"problem": problem} if problem else {}),
        }


def verify(
    path: str, trust_anchor: str | None = None, stack: ProvenanceAdmin | None = None
) -> tuple[dict[str, Any], bool]:
    """What an image's marks say, and whether it reads as AI-generated under a signature that holds (and, given a
    stack, that the signature is its key's: the signing certificate is the one installed for the stack's KMS key)."""
    try:
        image = Path(path).read_bytes()
    except OSError as exc:
        raise AdminError(f"Cannot read {path}: {exc.strerror}") from None
    anchors = Path(trust_anchor).read_bytes() if trust_anchor else None
    try:
        marks = read_marks(image, trust_anchors=anchors)
    except ValueError:
        raise AdminError(
            f"{path} is not a whole JPEG, PNG or WebP image (a base64 JSON answer must be decoded first)"
        ) from None
    report = {"file": path, **asdict(marks), "checked_at": datetime.now(UTC).isoformat(timespec="seconds")}
    generated = marks.valid and marks.manifest_source_type == TRAINED_ALGORITHMIC_MEDIA
    if stack is not None:
        serial = stack.signer_serial()
        report["signed_by_stack_key"] = serial is not None and marks.signer_serial == serial
        report["stack_key_id"] = stack.refs.provenance_key_id
        generated = generated and report["signed_by_stack_key"]
    return report, generated
