"""worker.media.fmp4_timing on hand-built init and media segments: the composition offsets of a
version-1 trun, the edit list, a segment's decode span (a chunked MPD's t and d), and a segment
that cannot be read."""

from __future__ import annotations

import struct
from fractions import Fraction

import pytest

from worker.media.errors import ENCODE_FAILED, MediaError
from worker.media.fmp4_timing import decode_span, first_presentation, media_timescale
from worker.media.mp4_boxes import make_box, make_full_box

MOVIE_SCALE, MEDIA_SCALE = 1000, 15360
FRAME = MEDIA_SCALE // 15


def init_segment(edits: list[tuple[int, int]] | None = None, *, mdhd_version: int = 0) -> bytes:
    """moov/mvhd, moov/trak/mdia/mdhd and, when given, trak/edts/elst of (duration, media_time)."""
    mvhd = make_full_box(b"mvhd", 0, 0, struct.pack(">III", 0, 0, MOVIE_SCALE) + bytes(84))
    times = struct.pack(">QQ", 0, 0) if mdhd_version else struct.pack(">II", 0, 0)
    mdhd = make_full_box(
        b"mdhd", mdhd_version, 0, times + struct.pack(">I", MEDIA_SCALE) + bytes(8)
    )
    trak = [make_full_box(b"tkhd", 0, 3, bytes(80))]
    if edits is not None:
        entries = b"".join(struct.pack(">IiI", d, t, 0x10000) for d, t in edits)
        elst = make_full_box(b"elst", 0, 0, struct.pack(">I", len(edits)) + entries)
        trak.append(make_box(b"edts", elst))
    trak.append(make_box(b"mdia", mdhd))
    return make_box(b"ftyp", b"iso6") + make_box(b"moov", mvhd + make_box(b"trak", b"".join(trak)))


def media_segment(decode_time: int, offsets: list[int], *, version: int = 1) -> bytes:
    """moof/traf with tfhd (a default sample duration of one frame), tfdt and a trun that
    gives each sample a size and a composition offset."""
    tfhd = make_full_box(b"tfhd", 0, 0x020008, struct.pack(">II", 1, FRAME))
    tfdt = make_full_box(b"tfdt", 1, 0, struct.pack(">Q", decode_time))
    offset_format = ">i" if version else ">I"
    samples = b"".join(struct.pack(">I", 100) + struct.pack(offset_format, o) for o in offsets)
    trun = make_full_box(b"trun", version, 0x000A01, struct.pack(">Ii", len(offsets), 0) + samples)
    moof = make_box(
        b"moof",
        make_full_box(b"mfhd", 0, 0, struct.pack(">I", 1)) + make_box(b"traf", tfhd + tfdt + trun),
    )
    return make_box(b"styp", b"msdh") + moof + make_box(b"mdat", bytes(100 * len(offsets)))


# I P B B as x264 orders them with negative offsets: shown at 0, 3, 1, 2 frames.
NEGATIVE = [0, 2 * FRAME, -FRAME, -FRAME]
# The same with positive offsets, each two frames later than shown.
POSITIVE = [2 * FRAME + offset for offset in NEGATIVE]


def test_negative_offsets_show_the_first_picture_at_its_decode_time():
    assert first_presentation(init_segment([(0, 0)]), media_segment(0, NEGATIVE)) == 0


def test_a_later_fragment_starts_at_its_decode_time():
    later = media_segment(30 * FRAME, NEGATIVE)
    assert first_presentation(init_segment(), later) == Fraction(30 * FRAME, MEDIA_SCALE)


def test_an_edit_list_takes_the_reordering_delay_back():
    segment = media_segment(0, POSITIVE, version=0)
    assert first_presentation(init_segment(), segment) == Fraction(2 * FRAME, MEDIA_SCALE)
    assert first_presentation(init_segment([(0, 2 * FRAME)]), segment) == 0


def test_an_empty_edit_delays_the_start_by_its_movie_time():
    init = init_segment([(133, -1), (0, 2 * FRAME)], mdhd_version=1)
    segment = media_segment(0, POSITIVE, version=0)
    assert first_presentation(init, segment) == Fraction(133, MOVIE_SCALE)


def test_the_earliest_shown_sample_counts_not_the_first_decoded():
    # An open GOP's leading B-frames are shown before the I-frame that is decoded first.
    segment = media_segment(10 * FRAME, [2 * FRAME, -FRAME, -FRAME])
    assert first_presentation(init_segment(), segment) == Fraction(10 * FRAME, MEDIA_SCALE)


@pytest.mark.parametrize(
    ("init", "segment", "missing"),
    [
        (make_box(b"ftyp", b"iso6"), media_segment(0, NEGATIVE), "moov"),
        (init_segment(), make_box(b"styp", b"msdh"), "moof"),
        (init_segment(), media_segment(0, [])[:-8], "trun has no samples"),
    ],
)
def test_a_segment_that_cannot_be_read_is_an_encode_failure(init, segment, missing):
    with pytest.raises(MediaError) as raised:
        first_presentation(init, segment)
    assert raised.value.code == ENCODE_FAILED
    assert missing in str(raised.value)


def test_a_segments_decode_span_is_its_tfdt_and_summed_durations():
    assert media_timescale(init_segment()) == MEDIA_SCALE
    assert decode_span(media_segment(30 * FRAME, NEGATIVE)) == (30 * FRAME, 4 * FRAME)
    # Two fragments in one segment: the span covers both.
    second = media_segment(34 * FRAME, [0, 0])
    both = media_segment(30 * FRAME, NEGATIVE) + second[second.index(b"moof") - 4 :]
    assert decode_span(both) == (30 * FRAME, 6 * FRAME)


def test_fragments_with_a_gap_between_them_are_an_encode_failure():
    second = media_segment(40 * FRAME, [0, 0])
    gapped = media_segment(30 * FRAME, NEGATIVE) + second[second.index(b"moof") - 4 :]
    with pytest.raises(MediaError, match="not contiguous"):
        decode_span(gapped)
    with pytest.raises(MediaError, match="no moof"):
        decode_span(make_box(b"styp", b"msdh"))
