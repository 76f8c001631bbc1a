"""Reading and writing ISO BMFF boxes (MP4, fMP4 segments): just what rewriting a fragmented
file's boxes needs (worker.media.cenc), no full parser."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from worker.media.errors import ENCODE_FAILED, MediaError

HEADER_BYTES = 8


@dataclass(frozen=True)
class Box:
    type: bytes
    # Offsets into the buffer the box was read from: its first byte, its payload's, its end.
    start: int
    payload_start: int
    end: int

    def payload(self, data: bytes | bytearray) -> bytes:
        return bytes(data[self.payload_start : self.end])

    def whole(self, data: bytes | bytearray) -> bytes:
        return bytes(data[self.start : self.end])


def boxes(data: bytes | bytearray, start: int = 0, end: int | None = None) -> Iterator[Box]:
    """The boxes one after another in data[start:end]."""
    end = len(data) if end is None else end
    position = start
    while position < end:
        if end - position < HEADER_BYTES:
            raise MediaError(ENCODE_FAILED, "an MP4 file ends inside a box header")
        size, kind = struct.unpack_from(">I4s", data, position)
        header = HEADER_BYTES
        if size == 1:
            (size,) = struct.unpack_from(">Q", data, position + HEADER_BYTES)
            header += 8
        elif size == 0:
            size = end - position
        if size < header or position + size > end:
            raise MediaError(ENCODE_FAILED, f"an MP4 box {kind!r} has a bad size ({size})")
        yield Box(kind, position, position + header, position + size)
        position += size


def children(data: bytes | bytearray, parent: Box, skip: int = 0) -> list[Box]:
    """The boxes inside `parent`, after `skip` bytes of its own fields."""
    return list(boxes(data, parent.payload_start + skip, parent.end))


def first(found: list[Box], kind: bytes) -> Box | None:
    return next((box for box in found if box.type == kind), None)


def make_box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", HEADER_BYTES + len(payload), kind) + payload


def make_full_box(kind: bytes, version: int, flags: int, payload: bytes) -> bytes:
    return make_box(kind, struct.pack(">I", (version << 24) | flags) + payload)


def full_box_header(data: bytes | bytearray, box: Box) -> tuple[int, int]:
    """(version, flags) of a full box."""
    (word,) = struct.unpack_from(">I", data, box.payload_start)
    return word >> 24, word & 0xFFFFFF
