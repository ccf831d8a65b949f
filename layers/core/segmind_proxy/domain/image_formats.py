"""Recognising image bytes, so a 200 whose body is not a whole image is caught before it is cached or served."""

from __future__ import annotations


def sniff_format(data: bytes) -> str | None:
    """The format of complete image bytes (jpeg, png, webp), or None if the bytes are not a whole image."""
    if data[:3] == b"\xff\xd8\xff" and data.rstrip(b"\x00")[-2:] == b"\xff\xd9":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[-12:-4] == b"\x00\x00\x00\x00IEND":
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and int.from_bytes(data[4:8], "little") + 8 <= len(data):
        return "webp"
    return None


# The formats image bytes can be in, as `sniff_format` names them, and their media types. A model's own names for
# its output formats (`jpg`, say) map onto these through the media types of its data file.
MEDIA_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
FORMAT_OF = {media_type: name for name, media_type in MEDIA_TYPES.items()}
