"""The first presentation time of a kiln fMP4 rendition, its timescale and each segment's decode
span, read from its boxes as MSE reads them, for assertions: independent of
worker.media.fmp4_timing, which it checks."""

from __future__ import annotations

import struct
from pathlib import Path


def fmp4_first_presentation(init: Path, segment: Path) -> float:
    """Seconds at which an fMP4 rendition's first sample is shown, as MSE computes it.

    tfdt (first decode time) plus the first sample's composition offset from trun, which may be
    negative in a version 1 trun. ffprobe cannot say this: its mov demuxer adds the largest
    negative offset to every pts. kiln's ladders carry no edit list that shifts the start (one
    method for HLS, DASH and CMAF, whose +cmaf writes none: docs/playback.md).
    """
    init_boxes = mp4_boxes(init.read_bytes())
    assert all(media_time == 0 for media_time in edit_media_times(init_boxes[b"elst"]))
    mdhd = init_boxes[b"mdhd"]
    timescale = struct.unpack(">I", mdhd[12:16] if mdhd[0] == 0 else mdhd[20:24])[0]
    boxes = mp4_boxes(segment.read_bytes())
    tfdt = boxes[b"tfdt"]
    decode_time = (
        struct.unpack(">Q", tfdt[4:12])[0] if tfdt[0] else struct.unpack(">I", tfdt[4:8])[0]
    )
    return (decode_time + first_composition_offset(boxes[b"trun"])) / timescale


_CONTAINER_BOXES = {b"moov", b"trak", b"mdia", b"edts", b"moof", b"traf"}


def mp4_boxes(data: bytes) -> dict[bytes, bytes]:
    """The body of the first box of each type, descending into the containers that matter."""
    found: dict[bytes, bytes] = {}
    stack = [(0, len(data))]
    while stack:
        offset, end = stack.pop()
        while offset + 8 <= end:
            size, kind = struct.unpack(">I4s", data[offset : offset + 8])
            header = 8
            if size == 1:
                size, header = struct.unpack(">Q", data[offset + 8 : offset + 16])[0], 16
            size = size or end - offset
            if kind in _CONTAINER_BOXES:
                stack.append((offset + header, offset + size))
            found.setdefault(kind, data[offset + header : offset + size])
            offset += size
    found.setdefault(b"elst", b"")
    return found


def edit_media_times(elst: bytes) -> list[int]:
    """media_time of each edit: where in the track the edit starts showing it (-1 = empty)."""
    if not elst:
        return []
    version, count = elst[0], struct.unpack(">I", elst[4:8])[0]
    # version 0: duration u32, media_time i32, rate; version 1: u64, i64, rate.
    entry_size, duration_size, media_format = (20, 8, ">q") if version == 1 else (12, 4, ">i")
    media_size = struct.calcsize(media_format)
    times = []
    for index in range(count):
        at = 8 + index * entry_size + duration_size
        times.append(struct.unpack(media_format, elst[at : at + media_size])[0])
    return times


def first_composition_offset(trun: bytes) -> int:
    version, flags = trun[0], int.from_bytes(trun[1:4], "big")
    position = 8 + 4 * bool(flags & 0x1) + 4 * bool(flags & 0x4)
    position += 4 * sum(bool(flags & bit) for bit in (0x100, 0x200, 0x400))
    if not flags & 0x800:
        return 0
    return struct.unpack(">i" if version else ">I", trun[position : position + 4])[0]


def fmp4_timescale(init: Path) -> int:
    """Ticks per second of an init segment's track (mdhd): the unit of tfdt and trun."""
    mdhd = mp4_boxes(init.read_bytes())[b"mdhd"]
    return int(struct.unpack(">I", mdhd[12:16] if mdhd[0] == 0 else mdhd[20:24])[0])


def fragment_span(segment: Path) -> tuple[int, int]:
    """(tfdt of the first fragment, summed sample durations of every fragment) of a media
    segment, in its track's timescale: where it sits on the rendition's decode timeline."""
    data = segment.read_bytes()
    start: int | None = None
    total = offset = 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        if kind == b"moof":
            found = mp4_boxes(data[offset : offset + size])
            tfdt = found[b"tfdt"]
            decode = (
                struct.unpack(">Q", tfdt[4:12])[0] if tfdt[0] else struct.unpack(">I", tfdt[4:8])[0]
            )
            start = decode if start is None else start
            total += _trun_duration(found[b"trun"], found[b"tfhd"])
        offset += size
    assert start is not None, f"{segment} has no moof"
    return start, total


def _trun_duration(trun: bytes, tfhd: bytes) -> int:
    flags, count = int.from_bytes(trun[1:4], "big"), struct.unpack(">I", trun[4:8])[0]
    if not flags & 0x100:
        # Every sample lasts tfhd's default-sample-duration (after track_ID and the optional
        # base data offset and sample description index).
        tfhd_flags = int.from_bytes(tfhd[1:4], "big")
        at = 8 + 8 * bool(tfhd_flags & 0x1) + 4 * bool(tfhd_flags & 0x2)
        return count * struct.unpack(">I", tfhd[at : at + 4])[0]
    position = 8 + 4 * bool(flags & 0x1) + 4 * bool(flags & 0x4)
    step = 4 * sum(bool(flags & bit) for bit in (0x100, 0x200, 0x400, 0x800))
    return sum(
        struct.unpack(">I", trun[position + i * step : position + i * step + 4])[0]
        for i in range(count)
    )
