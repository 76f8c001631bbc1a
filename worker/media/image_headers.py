"""Describing a JPEG, PNG or WebP output from its own bytes, as ffprobe would, without ffprobe.

A thumbnail job used to pay a second ffprobe run (~60 ms, mostly process start) to read back
a picture it had just written. For the pictures FFmpeg writes, every field an OutputFile takes
is in the file's headers; what ffprobe makes of them follows from how it picks a demuxer:

- PNG and WebP: their pipe demuxers recognise the signature with a higher score than image2
  gets from the file name, so the container is `png_pipe` / `webp_pipe`; a pipe demuxer has
  no frame count, so ffprobe reports no duration and no bitrate.
- JPEG: the jpeg_pipe demuxer wins over image2 only when the whole picture, through its end
  marker, fits in ffprobe's first 2,048-byte probe buffer. Larger files open as `image2`: one
  frame at image2's default 25 fps, so 0.04 s, and a bitrate of size x 8 / 0.04 s.

describe_image answers only for files it has checked end to end (every chunk or segment in
place, the file ending where its structure says): anything else, including a truncated or
damaged picture and the small JPEGs above, gets None and goes to ffprobe exactly as before.
tests/unit/test_image_headers.py holds every answer against ffprobe's on FFmpeg-written files.
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

# image2's default frame rate is 25 fps: one picture lasts 40,000 us (libavformat's time unit).
IMAGE2_FRAME_MICROSECONDS = 40_000
# The first probe buffer ffprobe fills (libavformat's PROBE_BUF_MIN); see the module docstring.
FIRST_PROBE_BYTES = 2048
# Characters that make ffprobe read a path as a numbered or glob pattern (image2 then scores
# higher and may open the file differently): such paths are left to ffprobe.
_PATTERN_CHARACTERS = frozenset("%*?[]{}")
# Larger pictures (a sprite is at most 16383 px a side) are read by ffprobe instead of into
# memory here.
MAX_BYTES = 64 * 1024 * 1024
# libavutil's av_image_check_size: a picture whose (w + 128) x (h + 128) reaches INT_MAX / 8
# is refused by the decoder, and ffprobe would report no dimensions.
_MAX_PADDED_AREA = (2**31 - 1) // 8

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Chunks that turn a PNG into an APNG, which ffprobe opens with another demuxer.
_APNG_CHUNKS = frozenset({b"acTL", b"fcTL", b"fdAT"})
# Colour type -> the bit depths PNG allows for it.
_PNG_DEPTHS = {0: {1, 2, 4, 8, 16}, 2: {8, 16}, 3: {1, 2, 4, 8}, 4: {8, 16}, 6: {8, 16}}

_JPEG_FRAME_MARKERS = frozenset({0xC0, 0xC1, 0xC2})  # baseline, extended, progressive Huffman
_JPEG_SKIPPED_MARKERS = frozenset({0xC4, 0xDB, 0xDD, 0xFE, *range(0xE0, 0xF0)})  # tables, APPn
_JPEG_SOS, _JPEG_EOI = 0xDA, 0xD9
# Inside entropy-coded data a 0xFF byte is followed by 0x00 (a stuffed byte) or a restart
# marker; any other byte after 0xFF is the next marker.
_NEXT_MARKER = re.compile(rb"\xff(?![\x00\xd0-\xd7])")

_VP8_START_CODE = b"\x9d\x01\x2a"
_VP8L_SIGNATURE = 0x2F


@dataclass(frozen=True)
class ImageDescription:
    """The OutputFile fields ffprobe's answer fills (worker.media.describe)."""

    container: str
    codec: str
    width: int
    height: int
    duration_seconds: float = 0.0
    bitrate: int = 0


def describe_image(path: Path) -> ImageDescription | None:
    """What ffprobe would report for the JPEG, PNG or WebP at `path`, or None when that cannot
    be told exactly from the bytes (ffprobe must then read the file). Blocking: file I/O."""
    suffix = path.suffix.lower()
    reader = _READERS.get(suffix)
    if reader is None or _PATTERN_CHARACTERS.intersection(str(path)):
        return None
    try:
        with path.open("rb") as file:
            data = file.read(MAX_BYTES + 1)
    except OSError:
        return None
    if len(data) > MAX_BYTES:
        return None
    found = reader(data)
    if found is None or not _decodable_size(found.width, found.height):
        return None
    return found


def _decodable_size(width: int, height: int) -> bool:
    return width > 0 and height > 0 and (width + 128) * (height + 128) < _MAX_PADDED_AREA


def read_jpeg(data: bytes) -> ImageDescription | None:
    """A JPEG of one frame (baseline, extended or progressive Huffman, 8-bit, grey or three
    components), every segment in place, ending at its EOI marker."""
    if len(data) <= FIRST_PROBE_BYTES or not data.startswith(b"\xff\xd8"):
        return None
    size: tuple[int, int] | None = None
    scanned = False
    position = 2
    end = len(data)
    while position + 2 <= end:
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == _JPEG_EOI:
            if position + 2 != end or size is None or not scanned:
                return None
            return ImageDescription(
                container="image2",
                codec="mjpeg",
                width=size[0],
                height=size[1],
                duration_seconds=IMAGE2_FRAME_MICROSECONDS / 1_000_000,
                # libavformat: file size x 8 over the duration, truncated to whole bits/s.
                bitrate=end * 8 * 1_000_000 // IMAGE2_FRAME_MICROSECONDS,
            )
        if position + 4 > end:
            return None
        length = int.from_bytes(data[position + 2 : position + 4], "big")
        segment_end = position + 2 + length
        if length < 2 or segment_end > end:
            return None
        if marker in _JPEG_FRAME_MARKERS:
            if size is not None or length < 8:
                return None
            precision, height, width, components = struct.unpack_from(">BHHB", data, position + 4)
            if precision != 8 or components not in (1, 3) or length != 8 + 3 * components:
                return None
            size = (width, height)
            position = segment_end
        elif marker == _JPEG_SOS:
            if size is None:
                return None
            scanned = True
            following = _NEXT_MARKER.search(data, segment_end)
            if following is None:
                return None
            position = following.start()
        elif marker in _JPEG_SKIPPED_MARKERS:
            position = segment_end
        else:
            return None  # another frame type, a second SOI, fill bytes: ffprobe decides
    return None


def read_png(data: bytes) -> ImageDescription | None:
    """A still PNG: IHDR first, every chunk's CRC right, at least one IDAT, IEND at the end."""
    if not data.startswith(_PNG_SIGNATURE):
        return None
    position = len(_PNG_SIGNATURE)
    end = len(data)
    size: tuple[int, int] | None = None
    has_image_data = False
    while position + 12 <= end:
        length = int.from_bytes(data[position : position + 4], "big")
        kind = data[position + 4 : position + 8]
        body_end = position + 8 + length
        if length >= 2**31 or body_end + 4 > end:
            return None
        crc = int.from_bytes(data[body_end : body_end + 4], "big")
        if zlib.crc32(data[position + 4 : body_end]) != crc:
            return None
        body = data[position + 8 : body_end]
        if size is None:
            if kind != b"IHDR" or length != 13:
                return None
            width, height, depth, colour, compression, filtering, interlace = struct.unpack(
                ">IIBBBBB", body
            )
            if depth not in _PNG_DEPTHS.get(colour, ()) or compression or filtering:
                return None
            if interlace not in (0, 1):
                return None
            size = (width, height)
        elif kind == b"IHDR" or kind in _APNG_CHUNKS:
            return None
        elif kind == b"IDAT":
            has_image_data = True
        elif kind == b"IEND":
            if length or body_end + 4 != end or not has_image_data:
                return None
            return ImageDescription("png_pipe", "png", size[0], size[1])
        position = body_end + 4
    return None


def read_webp(data: bytes) -> ImageDescription | None:
    """A simple-format WebP: RIFF sized to the file around one VP8 (lossy key frame, no
    scaling) or VP8L (lossless) chunk. Extended (VP8X) files, with alpha or animation, are
    left to ffprobe."""
    if len(data) < 20 or data[0:4] != b"RIFF" or data[8:12] != b"WEBP":
        return None
    if int.from_bytes(data[4:8], "little") + 8 != len(data):
        return None
    kind = data[12:16]
    length = int.from_bytes(data[16:20], "little")
    # One chunk, padded to an even size, filling the rest of the file.
    if 20 + length + (length & 1) != len(data):
        return None
    body = data[20 : 20 + length]
    if kind == b"VP8 ":
        found = _vp8_size(body)
    elif kind == b"VP8L":
        found = _vp8l_size(body)
    else:
        return None
    if found is None:
        return None
    return ImageDescription("webp_pipe", "webp", found[0], found[1])


def _vp8_size(body: bytes) -> tuple[int, int] | None:
    if len(body) < 10:
        return None
    tag = int.from_bytes(body[0:3], "little")
    key_frame = not tag & 1
    shown = bool(tag & 0x10)
    first_partition = tag >> 5
    if not key_frame or not shown or 10 + first_partition > len(body):
        return None
    if body[3:6] != _VP8_START_CODE:
        return None
    width_field, height_field = struct.unpack_from("<HH", body, 6)
    if width_field >> 14 or height_field >> 14:
        return None  # upscaling bits: what a decoder reports then is not read here
    return width_field & 0x3FFF, height_field & 0x3FFF


def _vp8l_size(body: bytes) -> tuple[int, int] | None:
    if len(body) < 5 or body[0] != _VP8L_SIGNATURE:
        return None
    bits = int.from_bytes(body[1:5], "little")
    if bits >> 29:
        return None  # version bits other than 0
    return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1


_READERS = {".jpg": read_jpeg, ".jpeg": read_jpeg, ".png": read_png, ".webp": read_webp}
# File name endings describe_image reads (case-insensitive, as ffprobe matches them).
IMAGE_SUFFIXES = frozenset(_READERS)
