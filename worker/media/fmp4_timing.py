"""When a fragmented-MP4 rendition's first sample is shown, read from its boxes as ISO/IEC
14496-12 defines it and as Chromium's Media Source parser was measured to read kiln's ladders
(docs/playback.md, "Audio/video alignment").

A sample is shown at its decode time (the fragment's tfdt plus the durations of the samples
before it in trun) plus its composition offset, moved back by the init segment's edit list
(elst media_time; an empty edit moves it forward). FFmpeg's own mov demuxer, and so ffprobe,
reads version-1 truns differently: it adds the largest negative composition offset to every
presentation time, so a B-frame rendition made with negative offsets, which a browser shows
from 0, reads there as starting a reordering delay (133 ms at 15 fps) later. Whatever has to
agree with the players (the WebVTT X-TIMESTAMP-MAP, a DASH sidecar's shift) reads the boxes.
(Chromium was seen to ignore an edit list of more than one entry, such as an empty edit before
the media; kiln's ladders have one edit at most.)
"""

from __future__ import annotations

import struct
from fractions import Fraction

from worker.media.errors import ENCODE_FAILED, MediaError
from worker.media.mp4_boxes import Box, boxes, children, first, full_box_header

# trun flags: which optional fields each sample entry carries.
_DATA_OFFSET, _FIRST_FLAGS = 0x1, 0x4
_DURATION, _SIZE, _FLAGS, _COMPOSITION = 0x100, 0x200, 0x400, 0x800
# tfhd flags: fields before default-sample-duration.
_BASE_OFFSET, _DESCRIPTION_INDEX, _DEFAULT_DURATION = 0x1, 0x2, 0x8


def first_presentation(init: bytes, segment: bytes) -> Fraction:
    """Seconds at which the first shown sample of `segment` (its first track fragment) is
    presented, given the rendition's `init` segment."""
    moov = _only(init, b"moov", "init segment")
    movie_scale = _timescale(init, _descend(init, moov, b"mvhd"), "mvhd")
    trak = _descend(init, moov, b"trak")
    media_scale = _timescale(init, _descend(init, trak, b"mdia", b"mdhd"), "mdhd")
    tfdt, trun, tfhd = _fragment_boxes(segment, _only(segment, b"moof", "media segment"))
    decode = _decode_time(segment, tfdt)
    shown = [
        decode + before + offset
        for before, offset in _sample_times(segment, trun, _default_duration(segment, tfhd))
    ]
    if not shown:
        raise MediaError(ENCODE_FAILED, "a media segment's trun has no samples")
    empty, media_time = _edit(init, trak)
    return Fraction(min(shown) - media_time, media_scale) + Fraction(empty, movie_scale)


def media_timescale(init: bytes) -> int:
    """Ticks per second of the init segment's (first) track: the unit of tfdt and trun."""
    moov = _only(init, b"moov", "init segment")
    trak = _descend(init, moov, b"trak")
    return _timescale(init, _descend(init, trak, b"mdia", b"mdhd"), "mdhd")


def decode_span(segment: bytes) -> tuple[int, int]:
    """(first decode time, summed sample durations) of a media segment's fragments, in the
    track's timescale: where the segment sits on a DASH SegmentTimeline (t, d)."""
    start: int | None = None
    total = 0
    for moof in (box for box in boxes(segment) if box.type == b"moof"):
        tfdt, trun, tfhd = _fragment_boxes(segment, moof)
        decode = _decode_time(segment, tfdt)
        if start is None:
            start = decode
        elif decode != start + total:
            raise MediaError(ENCODE_FAILED, "a media segment's fragments are not contiguous")
        total += _trun_total(segment, trun, _default_duration(segment, tfhd))
    if start is None:
        raise MediaError(ENCODE_FAILED, "a media segment has no moof box")
    return start, total


def _fragment_boxes(segment: bytes, moof: Box) -> tuple[Box, Box, Box]:
    """(tfdt, trun, tfhd) of a fragment's (first) track."""
    found = children(segment, _descend(segment, moof, b"traf"))
    tfdt, trun, tfhd = first(found, b"tfdt"), first(found, b"trun"), first(found, b"tfhd")
    if tfdt is None or trun is None or tfhd is None:
        raise MediaError(ENCODE_FAILED, "a media segment's traf lacks tfdt, tfhd or trun")
    return tfdt, trun, tfhd


def _only(data: bytes, kind: bytes, what: str) -> Box:
    box = first(list(boxes(data)), kind)
    if box is None:
        raise MediaError(ENCODE_FAILED, f"the {what} has no {kind.decode()} box")
    return box


def _descend(data: bytes, box: Box, *path: bytes) -> Box:
    for kind in path:
        inner = first(children(data, box), kind)
        if inner is None:
            raise MediaError(ENCODE_FAILED, f"an MP4 {box.type.decode()} has no {kind.decode()}")
        box = inner
    return box


def _timescale(data: bytes, header: Box, name: str) -> int:
    version, _ = full_box_header(data, header)
    # After version/flags: creation and modification times (32 or 64 bits each), timescale.
    at = header.payload_start + (20 if version else 12)
    (scale,) = struct.unpack_from(">I", data, at)
    if not scale:
        raise MediaError(ENCODE_FAILED, f"an MP4 {name} has a timescale of 0")
    return int(scale)


def _decode_time(data: bytes, tfdt: Box) -> int:
    version, _ = full_box_header(data, tfdt)
    return int(struct.unpack_from(">Q" if version else ">I", data, tfdt.payload_start + 4)[0])


def _default_duration(data: bytes, tfhd: Box) -> int:
    _, flags = full_box_header(data, tfhd)
    if not flags & _DEFAULT_DURATION:
        return 0
    at = tfhd.payload_start + 8  # version/flags, track_ID
    at += 8 * bool(flags & _BASE_OFFSET) + 4 * bool(flags & _DESCRIPTION_INDEX)
    return int(struct.unpack_from(">I", data, at)[0])


def _trun_total(data: bytes, trun: Box, default_duration: int) -> int:
    """The summed durations of a trun's samples."""
    _, flags = full_box_header(data, trun)
    (count,) = struct.unpack_from(">I", data, trun.payload_start + 4)
    if not flags & _DURATION:
        return count * default_duration
    at = trun.payload_start + 8 + 4 * bool(flags & _DATA_OFFSET) + 4 * bool(flags & _FIRST_FLAGS)
    step = 4 * sum(bool(flags & bit) for bit in (_DURATION, _SIZE, _FLAGS, _COMPOSITION))
    return sum(int(struct.unpack_from(">I", data, at + i * step)[0]) for i in range(count))


def _sample_times(data: bytes, trun: Box, default_duration: int) -> list[tuple[int, int]]:
    """(decode time from the fragment's start, composition offset) of each sample."""
    version, flags = full_box_header(data, trun)
    (count,) = struct.unpack_from(">I", data, trun.payload_start + 4)
    at = trun.payload_start + 8
    at += 4 * bool(flags & _DATA_OFFSET) + 4 * bool(flags & _FIRST_FLAGS)
    # A version-1 trun's offsets are signed: negative ones put a B-frame stream's first
    # picture at its first decode time.
    offset_format = ">i" if version else ">I"
    times = []
    elapsed = 0
    for _ in range(count):
        duration = default_duration
        if flags & _DURATION:
            (duration,) = struct.unpack_from(">I", data, at)
            at += 4
        at += 4 * bool(flags & _SIZE) + 4 * bool(flags & _FLAGS)
        offset = 0
        if flags & _COMPOSITION:
            (offset,) = struct.unpack_from(offset_format, data, at)
            at += 4
        times.append((elapsed, offset))
        elapsed += duration
    return times


def _edit(data: bytes, trak: Box) -> tuple[int, int]:
    """(empty time in the movie's timescale, media_time in the track's) of the edit list;
    (0, 0) without one."""
    edts = first(children(data, trak), b"edts")
    elst = None if edts is None else first(children(data, edts), b"elst")
    if elst is None:
        return 0, 0
    version, _ = full_box_header(data, elst)
    (count,) = struct.unpack_from(">I", data, elst.payload_start + 4)
    entry = ">Qq" if version else ">Ii"
    at, empty = elst.payload_start + 8, 0
    for _ in range(count):
        duration, media_time = struct.unpack_from(entry, data, at)
        at += struct.calcsize(entry) + 4  # and the media rate
        if media_time != -1:
            return empty, int(media_time)
        empty += int(duration)
    return empty, 0
