"""The DASH manifest of a chunked DASH or CMAF output, written from the renditions' segments
rather than by FFmpeg's dash muxer (which never sees the output whole).

Each Representation names its own init segment and segments (the layout the chunks wrote:
v0/init_0.mp4, v0/seg_00000.m4s, ...) and states every segment's exact decode time and length
(SegmentTimeline t and d, in the track's timescale) as read from the segments' boxes, so the
timeline is the segments' own: no rounding, and a gap or overlap at a join cannot hide.
codecs is the measured RFC 6381 string and bandwidth the peak segment bit rate, as the
single-pass packaging corrects them to (worker.media.dash_mpd).

The server writes the same MPD while the chunks finish, dynamic (play while encoding, see
LiveMpd), and the merge writes it static: both list segments the same way, so a player that
started on the dynamic one finds every segment where it was when the MPD turns static
(DASH-IF IOP 4.3, 4.6.4: the type may change from dynamic to static at an update).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from fractions import Fraction
from xml.sax.saxutils import quoteattr

from common.hls_playlists import Rendition, SegmentEntry

MPD_NAME = "manifest.mpd"
# How much longer than minimumUpdatePeriod the static MPD waits (see static_after_seconds):
# a player's refresh comes that period after its last fetch ended, plus its own latency.
_REFRESH_SLACK_SECONDS = 1.0
# The longest minimumUpdatePeriod: the merge of every chunked DASH or CMAF output waits one
# period (and the slack) before the static MPD, so a period of a whole 6 s segment cost 7 s
# of every such job's wall time (3 % of a 120 s 1080p ladder on one worker, 5 % on two),
# where 2 s costs 3 s; a player then reads the small MPD three times a segment.
_LONGEST_UPDATE_PERIOD_SECONDS = 2.0
_SEGMENT_NAME = re.compile(r"seg_(\d{5})\.m4s")
_PROFILE = "urn:mpeg:dash:profile:isoff-live:2011"


@dataclass(frozen=True)
class LiveMpd:
    """What makes the MPD dynamic while the output is still being encoded.

    Media time 0 is at `availability_start` (the job's start), in the past. Every Segment-
    Template says availabilityTimeOffset="INF": a segment is available as soon as the MPD
    lists it (the server lists only segments stored), not when the wall clock reaches its end,
    so a player is never held back by an encode that runs ahead of real time. There is no
    timeShiftBufferDepth: the whole presentation stays available, as it does once static, and
    `delay_seconds` (suggestedPresentationDelay) is at least the time since the start, so a
    player going by it starts at 0 rather than at the live edge. UTCTiming gives the server's
    clock directly (no time server: players such as dash.js would otherwise ask one on the
    internet); minimumUpdatePeriod is a segment, the time a new one takes to appear at most
    often, and no more than 2 s (update_period_seconds).
    """

    availability_start: datetime
    published: datetime
    delay_seconds: float
    # Every piece is done, the merge not yet: the MPD lists every segment and says where the
    # presentation ends (mediaPresentationDuration, which a dynamic MPD may carry), so that a
    # player knows the end before the static MPD replaces this one.
    complete: bool = False


def update_period_seconds(segment_seconds: float) -> float:
    """minimumUpdatePeriod of the dynamic MPD: how often players read it again."""
    return min(segment_seconds, _LONGEST_UPDATE_PERIOD_SECONDS)


def static_after_seconds(segment_seconds: float) -> float:
    """How long after the last dynamic MPD (published when the last piece ended, before the
    merge was queued) the merge writes the static one: a refresh of every player that plays
    the dynamic one. dash.js takes the turn to static as the end of every segment list (DASH-IF
    IOP 4.3, 4.6.4): a segment that only the static MPD lists would never be requested, so
    every player must have read the dynamic MPD that lists them all first."""
    return update_period_seconds(segment_seconds) + _REFRESH_SLACK_SECONDS


def chunked_mpd(
    video: Sequence[Rendition],
    audio: Rendition | None,
    *,
    segment_seconds: float,
    live: LiveMpd | None = None,
) -> str:
    """One video AdaptationSet with every variant, and one for the audio: static, or dynamic
    while the output is encoded (`live`)."""
    ends_at = presentation_end(max(_seconds(r) for r in [*video, *([audio] if audio else [])]))
    if live is None:
        timing = f'type="static" mediaPresentationDuration="{_iso_duration(ends_at)}" '
    else:
        ends = f'mediaPresentationDuration="{_iso_duration(ends_at)}" ' if live.complete else ""
        period = Fraction(update_period_seconds(segment_seconds))
        timing = (
            f'type="dynamic" availabilityStartTime="{_xs_datetime(live.availability_start)}" '
            f"{ends}"
            f'publishTime="{_xs_datetime(live.published)}" '
            f'minimumUpdatePeriod="{_iso_duration(period)}" '
            f'suggestedPresentationDelay="PT{math.ceil(live.delay_seconds)}S" '
        )
    lines = [
        '<?xml version="1.0" encoding="utf-8"?>',
        '<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" '
        f'{timing}profiles="{_PROFILE}" '
        f'minBufferTime="{_iso_duration(Fraction(segment_seconds))}">',
        '  <Period id="0" start="PT0S">',
        '    <AdaptationSet id="0" contentType="video" mimeType="video/mp4" '
        f'segmentAlignment="true" startWithSAP="1" maxWidth="{max(r.width for r in video)}" '
        f'maxHeight="{max(r.height for r in video)}">',
    ]
    live_template = live is not None
    for rendition in video:
        rate = Fraction(rendition.frame_rate).limit_denominator(1001)
        lines.append(
            f"      <Representation id={quoteattr(rendition.name)} "
            f'codecs={quoteattr(rendition.codec)} bandwidth="{rendition.peak_bitrate}" '
            f'width="{rendition.width}" height="{rendition.height}" '
            f'frameRate="{rate.numerator}/{rate.denominator}">'
        )
        lines += _segment_template(rendition, live=live_template)
        lines.append("      </Representation>")
    lines.append("    </AdaptationSet>")
    if audio is not None:
        lines += [
            '    <AdaptationSet id="1" contentType="audio" mimeType="audio/mp4" '
            'segmentAlignment="true" startWithSAP="1">',
            f"      <Representation id={quoteattr(audio.name)} codecs={quoteattr(audio.codec)} "
            f'bandwidth="{audio.peak_bitrate}">',
            *_segment_template(audio, live=live_template),
            "      </Representation>",
            "    </AdaptationSet>",
        ]
    lines.append("  </Period>")
    if live is not None:
        lines.append(
            '  <UTCTiming schemeIdUri="urn:mpeg:dash:utc:direct:2014" '
            f'value="{_xs_datetime(live.published)}"/>'
        )
    lines.append("</MPD>")
    return "\n".join(lines) + "\n"


def presentation_end(media_seconds: Fraction) -> Fraction:
    """mediaPresentationDuration: the first whole millisecond after the media's last sample
    (an xs:duration to the millisecond), never on it nor before it.

    dash.js 5.2 checks every 200 ms whether the playhead has reached the Period's end, and if
    the video element has not fired `ended` yet, seeks there itself; a seek to the end of a
    static presentation it moves back by `seekDurationBackoff` (0.5 s), and pauses. The
    playhead rests at the media's end (the MediaSource's duration once ended) for a moment
    before `ended` fires: with a Period ending on or before that point (26.005 s rounded from
    26.005333), a check landing in that moment stopped playback 0.5 s short of the end, in 2
    of 5 runs of tests/e2e/test_chunked_live.py. A Period that ends after the last sample is
    never reached by the playhead, so `ended` is the browser's own, which dash.js follows."""
    return Fraction(math.floor(media_seconds * 1000) + 1, 1000)


def _segment_template(rendition: Rendition, *, live: bool) -> list[str]:
    folder, _, first_name = rendition.segments[0].path.rpartition("/")
    start_number = _segment_number(first_name)
    prefix = f"{folder}/" if folder else ""
    available = ' availabilityTimeOffset="INF"' if live else ""
    return [
        f'        <SegmentTemplate timescale="{rendition.timescale}" '
        f"initialization={quoteattr(rendition.init_path)} "
        f'media={quoteattr(prefix + "seg_$Number%05d$.m4s")} startNumber="{start_number}"'
        f"{available}>",
        "          <SegmentTimeline>",
        *(f"            {entry}" for entry in timeline_entries(rendition.segments)),
        "          </SegmentTimeline>",
        "        </SegmentTemplate>",
    ]


def timeline_entries(segments: Sequence[SegmentEntry]) -> list[str]:
    """<S> elements over the segments: t where a run starts (and wherever a segment does not
    start where the previous one ends), d, and r for the repeats of the same d."""
    runs: list[list[int]] = []  # [t, d, r]
    expected: int | None = None
    for segment in segments:
        run = runs[-1] if runs else None
        contiguous = expected == segment.decode_time
        if run is not None and contiguous and run[1] == segment.decode_duration:
            run[2] += 1
        else:
            runs.append([segment.decode_time, segment.decode_duration, 0])
        expected = segment.decode_time + segment.decode_duration
    entries = []
    previous_end: int | None = None
    for t, d, r in runs:
        time = "" if previous_end == t else f't="{t}" '
        repeat = f' r="{r}"' if r else ""
        entries.append(f'<S {time}d="{d}"{repeat}/>')
        previous_end = t + d * (r + 1)
    return entries


def _segment_number(name: str) -> int:
    match = _SEGMENT_NAME.fullmatch(name)
    if match is None:
        raise ValueError(f"{name!r} is not a chunk's segment (seg_NNNNN.m4s)")
    return int(match.group(1))


def _seconds(rendition: Rendition) -> Fraction:
    first, last = rendition.segments[0], rendition.segments[-1]
    ticks = last.decode_time + last.decode_duration - first.decode_time
    return Fraction(ticks, rendition.timescale)


def _iso_duration(seconds: Fraction) -> str:
    return f"PT{float(seconds):.3f}S"


def _xs_datetime(moment: datetime) -> str:
    """xs:dateTime in UTC to the millisecond ("2026-12-07T12:41:33.123Z")."""
    return (
        moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    )
