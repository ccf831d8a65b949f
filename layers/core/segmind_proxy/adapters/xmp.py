"""XMP that says an image is AI-generated (the IPTC digital source type), written into JPEG, PNG and WebP bytes as they
are: the pixels are never decoded or encoded again, so a lossy image loses nothing and marking stays cheap. Pure
bytes, no imaging library.

Where XMP lives in each format: JPEG, an APP1 segment opening with the XMP namespace and a NUL; PNG, an uncompressed
`iTXt` chunk keyed `XML:com.adobe.xmp` before the image data; WebP, an `XMP ` chunk, which only the extended (VP8X)
layout may hold, with the VP8X header's XMP flag set."""

from __future__ import annotations

import re
import struct
import zlib
from xml.etree import ElementTree
from xml.sax.saxutils import escape

from segmind_proxy.domain.image_formats import sniff_format
from segmind_proxy.domain.provenance import TRAINED_ALGORITHMIC_MEDIA, MarkLabel

IPTC_EXT_NS = "http://iptc.org/std/Iptc4xmpExt/2008-02-29/"  # the IPTC Extension schema, as Adobe's toolkit names it
RDF_NS = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"

_JPEG_XMP = b"http://ns.adobe.com/xap/1.0/\x00"
_JPEG_EXIF = b"Exif\x00\x00"
_JPEG_MAX_SEGMENT = 0xFFFF - 2  # a segment's length field counts itself
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_XMP_KEYWORD = b"XML:com.adobe.xmp"
_WEBP_XMP_FLAG = 0x04
_WEBP_ALPHA_FLAG = 0x10

# XML 1.0 refuses these characters even escaped; a model title is catalog data, but an XMP packet must always parse.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def ai_generated_xmp(label: MarkLabel) -> bytes:
    """An XMP packet saying the image was made by a trained model (IPTC `trainedAlgorithmicMedia`), which tool made
    it and when. The prompt is never in it: XMP is unsigned and read by everything, and the signed C2PA manifest
    carries the prompt where the tenant opted in."""
    tool = f"{label.generator} {label.generator_version} ({label.model_title}, {label.model})"
    properties = (
        ("Iptc4xmpExt:DigitalSourceType", TRAINED_ALGORITHMIC_MEDIA),
        ("xmp:CreatorTool", tool),
        ("xmp:CreateDate", label.created_at),
    )
    body = "".join(f"<{name}>{_text(value)}</{name}>" for name, value in properties)
    packet = (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">'
        f'<rdf:RDF xmlns:rdf="{RDF_NS}">'
        '<rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/"'
        f' xmlns:Iptc4xmpExt="{IPTC_EXT_NS}">{body}</rdf:Description>'
        "</rdf:RDF></x:xmpmeta>"
        '<?xpacket end="r"?>'
    )
    return packet.encode()


def _text(value: str) -> str:
    return escape(_NOT_XML.sub("", value))


def with_xmp(image: bytes, image_format: str, packet: bytes) -> bytes:
    """`image` with `packet` as its XMP, the pixels' bytes untouched. An image that already has XMP is returned as it
    is: its packet may be a mark made upstream (never stripped, never contradicted by a second packet that readers
    would pick between), and the signed manifest added next says what this gateway knows either way. Raises
    ValueError for bytes that are not a whole image of `image_format`."""
    _check_format(image, image_format)
    if read_xmp(image) is not None:
        return image
    if image_format == "jpeg":
        return _jpeg_with_xmp(image, packet)
    if image_format == "png":
        return _png_with_xmp(image, packet)
    return _webp_with_xmp(image, packet)


def read_xmp(image: bytes) -> str | None:
    """The image's XMP packet as text, or None where it has none. Raises ValueError for bytes that are not a whole
    JPEG, PNG or WebP image."""
    image_format = sniff_format(image)
    if image_format == "jpeg":
        payload = next((data[len(_JPEG_XMP) :] for _, data in _jpeg_headers(image) if data.startswith(_JPEG_XMP)), None)
    elif image_format == "png":
        payload = next((_itxt_text(data) for kind, data, _ in _png_chunks(image) if _is_xmp_itxt(kind, data)), None)
    elif image_format == "webp":
        payload = next((data for kind, data, _ in _webp_chunks(image) if kind == b"XMP "), None)
    else:
        raise ValueError("not a whole JPEG, PNG or WebP image")
    return None if payload is None else payload.decode("utf-8", errors="replace")


def digital_source_type(xmp: str) -> str | None:
    """The IPTC digital source type an XMP packet declares (as an element, an attribute or a resource), or None
    where it declares none or is not XML."""
    try:
        root = ElementTree.fromstring(xmp.strip().lstrip("\ufeff"))
    except ElementTree.ParseError:
        return None
    name = f"{{{IPTC_EXT_NS}}}DigitalSourceType"
    for element in root.iter():
        if name in element.attrib:
            return element.attrib[name].strip()
        if element.tag == name:
            value = (element.text or "").strip() or element.attrib.get(f"{{{RDF_NS}}}resource", "").strip()
            return value or None
    return None


def _check_format(image: bytes, image_format: str) -> None:
    if image_format not in ("jpeg", "png", "webp"):
        raise ValueError(f"no XMP for image format {image_format!r}")
    if sniff_format(image) != image_format:
        raise ValueError(f"not a whole {image_format} image")


# JPEG: a sequence of marker segments up to the start of scan; each header segment has a big-endian length.


def _jpeg_headers(image: bytes) -> list[tuple[int, bytes]]:
    """(marker, payload) of each segment before the scan data; ValueError where the structure does not hold."""
    segments: list[tuple[int, bytes]] = []
    at = 2
    while True:
        if at + 4 > len(image) or image[at] != 0xFF:
            raise ValueError("not a whole jpeg image: a segment is cut short")
        marker = image[at + 1]
        if marker == 0xFF:  # fill bytes may pad between segments
            at += 1
            continue
        if marker in (0xD9, 0xDA):  # end of image, start of scan: the headers end
            return segments
        length = int.from_bytes(image[at + 2 : at + 4], "big")
        if length < 2 or at + 2 + length > len(image):
            raise ValueError("not a whole jpeg image: a segment's length overruns it")
        segments.append((marker, image[at + 4 : at + 2 + length]))
        at += 2 + length


def _jpeg_with_xmp(image: bytes, packet: bytes) -> bytes:
    payload = _JPEG_XMP + packet
    if len(payload) > _JPEG_MAX_SEGMENT:
        raise ValueError("the XMP packet is too large for one JPEG segment")
    # After JFIF (APP0, which must come first) and Exif (APP1): where XMP's own specification puts it.
    at = 2
    for marker, data in _jpeg_headers(image):
        if not (marker == 0xE0 or (marker == 0xE1 and data.startswith(_JPEG_EXIF))):
            break
        at += 4 + len(data)
    segment = b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload
    return image[:at] + segment + image[at:]


# PNG: the signature, then chunks of length, type, data and a CRC over type and data.


def _png_chunks(image: bytes) -> list[tuple[bytes, bytes, int]]:
    """(type, data, offset) of each chunk; ValueError where the structure does not hold."""
    chunks: list[tuple[bytes, bytes, int]] = []
    at = len(_PNG_SIGNATURE)
    while at < len(image):
        if at + 12 > len(image):
            raise ValueError("not a whole png image: a chunk is cut short")
        length = int.from_bytes(image[at : at + 4], "big")
        end = at + 12 + length
        if end > len(image):
            raise ValueError("not a whole png image: a chunk's length overruns it")
        chunks.append((image[at + 4 : at + 8], image[at + 8 : at + 8 + length], at))
        at = end
    if not chunks or chunks[0][0] != b"IHDR" or chunks[-1][0] != b"IEND":
        raise ValueError("not a whole png image: IHDR or IEND missing")
    return chunks


def _is_xmp_itxt(kind: bytes, data: bytes) -> bool:
    return kind == b"iTXt" and data.startswith(_PNG_XMP_KEYWORD + b"\x00")


def _itxt_text(data: bytes) -> bytes:
    """An iTXt chunk's text: keyword NUL, compression flag and method, language tag NUL, translated keyword NUL."""
    rest = data[len(_PNG_XMP_KEYWORD) + 1 :]
    compressed = rest[:1] == b"\x01"
    _, _, rest = rest[2:].partition(b"\x00")  # the language tag
    _, _, text = rest.partition(b"\x00")  # the translated keyword
    try:
        return zlib.decompress(text) if compressed else text
    except zlib.error as exc:
        raise ValueError("not a whole png image: its XMP cannot be decompressed") from exc


def _png_with_xmp(image: bytes, packet: bytes) -> bytes:
    idat = next((at for kind, _, at in _png_chunks(image) if kind == b"IDAT"), None)
    if idat is None:
        raise ValueError("not a whole png image: no image data")
    data = _PNG_XMP_KEYWORD + b"\x00\x00\x00\x00\x00" + packet  # uncompressed, no language, no translation
    kind = b"iTXt"
    chunk = len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")
    return image[:idat] + chunk + image[idat:]


# WebP: a RIFF container of chunks (FourCC, little-endian size, data, a pad byte where the size is odd).


def _webp_chunks(image: bytes) -> list[tuple[bytes, bytes, int]]:
    """(FourCC, data, offset) of each chunk inside the RIFF size (bytes after it are not the image's)."""
    end = 8 + int.from_bytes(image[4:8], "little")
    chunks: list[tuple[bytes, bytes, int]] = []
    at = 12
    while at < end:
        if at + 8 > end:
            raise ValueError("not a whole webp image: a chunk is cut short")
        size = int.from_bytes(image[at + 4 : at + 8], "little")
        if at + 8 + size > end:
            raise ValueError("not a whole webp image: a chunk's size overruns it")
        chunks.append((image[at : at + 4], image[at + 8 : at + 8 + size], at))
        at += 8 + size + (size & 1)
    if not chunks or chunks[0][0] not in (b"VP8 ", b"VP8L", b"VP8X"):
        raise ValueError("not a whole webp image: no VP8, VP8L or VP8X chunk first")
    return chunks


def _webp_chunk(kind: bytes, data: bytes) -> bytes:
    return kind + len(data).to_bytes(4, "little") + data + b"\x00" * (len(data) & 1)


def _webp_with_xmp(image: bytes, packet: bytes) -> bytes:
    chunks = _webp_chunks(image)
    first_kind, first_data, _ = chunks[0]
    if first_kind == b"VP8X":
        if len(first_data) < 10:
            raise ValueError("not a whole webp image: a short VP8X header")
        header = bytes([first_data[0] | _WEBP_XMP_FLAG]) + first_data[1:]
        body = [_webp_chunk(b"VP8X", header)] + [_webp_chunk(kind, data) for kind, data, _ in chunks[1:]]
    else:
        # A simple file holds one image chunk and nothing else may follow it: make it extended, with the canvas
        # size the VP8X header must state read from the bitstream's own header.
        width, height, alpha = _simple_webp_canvas(first_kind, first_data)
        flags = _WEBP_XMP_FLAG | (_WEBP_ALPHA_FLAG if alpha else 0)
        header = struct.pack("<I", flags) + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
        body = [_webp_chunk(b"VP8X", header)] + [_webp_chunk(kind, data) for kind, data, _ in chunks]
    # XMP comes last among the known chunks (after the image data and any EXIF), as the container's layout says.
    content = b"WEBP" + b"".join(body) + _webp_chunk(b"XMP ", packet)
    return b"RIFF" + len(content).to_bytes(4, "little") + content


def _simple_webp_canvas(kind: bytes, data: bytes) -> tuple[int, int, bool]:
    """(width, height, alpha) from a VP8 key frame's header or a VP8L header."""
    if kind == b"VP8 ":
        if len(data) < 10 or data[3:6] != b"\x9d\x01\x2a":
            raise ValueError("not a whole webp image: no VP8 key frame header")
        width = int.from_bytes(data[6:8], "little") & 0x3FFF
        height = int.from_bytes(data[8:10], "little") & 0x3FFF
        return width, height, False
    if len(data) < 5 or data[0] != 0x2F:
        raise ValueError("not a whole webp image: no VP8L header")
    bits = int.from_bytes(data[1:5], "little")
    return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, bool(bits >> 28 & 1)
