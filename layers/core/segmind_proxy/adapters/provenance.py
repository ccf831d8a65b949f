"""The `Marker` of a deployed stack: a KMS key signs, its certificate chain is read from Secrets Manager and checked
against the key before the first image is marked. Until that check passes (no chain installed yet, or one for another
key) the marker is not ready, and a generation that must be marked is refused before it is paid for."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from segmind_proxy.adapters.aws_clients import kms, outage_of, secrets_manager
from segmind_proxy.adapters.c2pa_marks import C2paMarker, KmsSigner, check_chain, kms_public_key
from segmind_proxy.domain.errors import Dependency, Outage
from segmind_proxy.domain.provenance import MarkLabel
from segmind_proxy.observability import logger

CHAIN_PLACEHOLDER = "REPLACE_WITH_THE_CERTIFICATE_CHAIN"  # the template's, until an operator installs a chain
RECHECK_SECONDS = 30.0  # how long a failed check stands before the next miss tries again (two AWS calls each time)


class NotReady(Exception):
    """Why the marker cannot sign (the Outage's cause): safe to log, never holds key material."""


def chain_from_secret(secret_id: str, client: Callable[[], Any] = secrets_manager) -> bytes:
    """The chain (PEM, signing certificate first) as installed in its secret."""
    with outage_of(Dependency.SIGNING):
        text = client().get_secret_value(SecretId=secret_id)["SecretString"]
    if not text.strip() or text.strip() == CHAIN_PLACEHOLDER:
        raise NotReady(
            f"No certificate chain installed in {secret_id}: run `segmind-proxy provenance install-chain` (or "
            "`self-sign`), see docs/trust-and-safety.md"
        )
    return text.encode()


class KmsMarker:
    """C2PA marks signed by a KMS key, with its chain from Secrets Manager: built and checked once, on first use."""

    def __init__(
        self,
        key_id: str,
        chain_secret: str,
        tsa_url: str | None = None,
        *,
        client: Callable[[], Any] = kms,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.key_id, self.chain_secret, self.tsa_url = key_id, chain_secret, tsa_url or None
        self._client, self._clock = client, clock
        self._marker: C2paMarker | None = None
        self._failed: tuple[float, BaseException] | None = None
        self._lock = threading.Lock()

    def ready(self) -> None:
        if self._marker is not None:
            return
        with self._lock:
            if self._marker is not None:
                return
            if self._failed is not None and self._clock() - self._failed[0] < RECHECK_SECONDS:
                raise Outage(Dependency.SIGNING) from self._failed[1]
            try:
                self._marker = self._build()
                self._failed = None
            except (Outage, NotReady, ValueError) as exc:
                cause = exc.__cause__ if isinstance(exc, Outage) and exc.__cause__ else exc
                self._failed = (self._clock(), cause)
                logger.error("The provenance signer is not ready: %s", cause)
                raise Outage(Dependency.SIGNING) from cause

    def _build(self) -> C2paMarker:
        chain = chain_from_secret(self.chain_secret)
        try:
            check_chain(chain, kms_public_key(self._client(), self.key_id))
        except ValueError as exc:
            raise NotReady(f"The chain in {self.chain_secret} cannot sign with key {self.key_id}: {exc}") from exc
        return C2paMarker(KmsSigner(self.key_id, self._client), chain, self.tsa_url)

    def mark(self, image: bytes, image_format: str, label: MarkLabel) -> bytes:
        self.ready()
        assert self._marker is not None
        return self._marker.mark(image, image_format, label)
