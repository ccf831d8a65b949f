"""Provenance: what marks a generated image as AI-generated. The IPTC digital source type goes into the image's XMP
and into a signed C2PA manifest's `c2pa.created` action (adapters/xmp.py, adapters/c2pa_marks.py); this module holds
what the flows and the adapters share, with no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

# IPTC NewsCodes, digital source type: "created by a model trained on sampled content" (what text-to-image is).
TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
GENERATOR = "segmind-proxy"  # the gateway, as the manifest's claim generator names it


@dataclass(frozen=True)
class MarkLabel:
    """What a mark says of one image: the model that made it, when, by which gateway; the prompt only where its
    tenant opted in (prompts can be private)."""

    model: str  # Segmind's slug
    model_title: str  # the catalog's display name
    created_at: str  # ISO 8601, UTC
    generator: str = GENERATOR
    generator_version: str = "0.1.0"
    prompt: str | None = None


class Provenance(StrEnum):
    """What marks a result's images carry; kept with stored images (metadata `provenance`), so a hit says it too."""

    MARKED = "c2pa"  # the IPTC digital source type in XMP, and a signed C2PA manifest
    UNMARKED = "none"  # marking is off for its tenant or the stack (or the images predate marking)
    FAILED = "failed"  # marking was due but the signer failed: delivered unmarked, and never cached

    @classmethod
    def recorded(cls, metadata: Mapping[str, Any]) -> Provenance:
        """As stored images' metadata or a kept outcome records it; nothing recorded: unmarked."""
        try:
            return cls(metadata.get("provenance", cls.UNMARKED))
        except ValueError:
            return cls.UNMARKED
