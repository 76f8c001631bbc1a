"""The single pass's MPD as the worker corrects it after FFmpeg's dash muxer wrote it: where the
presentation ends."""

from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree

from worker.media.dash_mpd import end_after_the_media

# The dash muxer's MPD of a 26 s ladder (one video rendition kept) with 48 kHz AAC, as FFmpeg
# 5.1 wrote it: the duration is the video's, the audio's timeline ends at 1248256 / 48000 s.
MUXED = """<?xml version="1.0" encoding="utf-8"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011"
\tprofiles="urn:mpeg:dash:profile:isoff-live:2011"
\ttype="static"
\tmediaPresentationDuration="PT26.0S"
\tmaxSegmentDuration="PT2.0S"
\tminBufferTime="PT4.0S">
\t<Period id="0" start="PT0.0S">
\t\t<AdaptationSet id="0" contentType="video" startWithSAP="1" segmentAlignment="true">
\t\t\t<Representation id="0" mimeType="video/mp4" codecs="avc1.64000d" bandwidth="73999">
\t\t\t\t<SegmentTemplate timescale="15360" initialization="init-$RepresentationID$.mp4" \
media="seg-$RepresentationID$-$Number%05d$.m4s" startNumber="1">
\t\t\t\t\t<SegmentTimeline>
\t\t\t\t\t\t<S t="0" d="30720" r="12" />
\t\t\t\t\t</SegmentTimeline>
\t\t\t\t</SegmentTemplate>
\t\t\t</Representation>
\t\t</AdaptationSet>
\t\t<AdaptationSet id="1" contentType="audio" startWithSAP="1" segmentAlignment="true">
\t\t\t<Representation id="1" mimeType="audio/mp4" codecs="mp4a.40.2" bandwidth="64000">
\t\t\t\t<SegmentTemplate timescale="48000" initialization="init-$RepresentationID$.mp4" \
media="seg-$RepresentationID$-$Number%05d$.m4s" startNumber="1">
\t\t\t\t\t<SegmentTimeline>
\t\t\t\t\t\t<S t="0" d="93184" />
\t\t\t\t\t\t<S d="96256" r="1" />
\t\t\t\t\t\t<S d="95232" />
\t\t\t\t\t\t<S d="96256" r="2" />
\t\t\t\t\t\t<S d="95232" />
\t\t\t\t\t\t<S d="96256" r="2" />
\t\t\t\t\t\t<S d="95232" />
\t\t\t\t\t\t<S d="96256" />
\t\t\t\t\t\t<S d="3072" />
\t\t\t\t\t</SegmentTimeline>
\t\t\t\t</SegmentTemplate>
\t\t\t</Representation>
\t\t</AdaptationSet>
\t</Period>
</MPD>
"""


def duration_of(manifest: Path) -> str | None:
    return ElementTree.parse(manifest).getroot().get("mediaPresentationDuration")


def test_the_presentation_ends_after_the_audio_s_last_sample(tmp_path: Path):
    manifest = tmp_path / "manifest.mpd"
    manifest.write_text(MUXED)
    end_after_the_media(manifest)
    assert duration_of(manifest) == "PT26.006S"
    # Nothing else changes.
    assert manifest.read_text() == MUXED.replace("PT26.0S", "PT26.006S")


VIDEO_TIMELINE = (
    "\t\t\t\t\t<SegmentTimeline>\n"
    '\t\t\t\t\t\t<S t="0" d="30720" r="12" />\n'
    "\t\t\t\t\t</SegmentTimeline>\n"
)


def test_a_later_video_end_after_a_timeline_jump_counts(tmp_path: Path):
    # The video's timeline jumps (t) and ends at 30 s, on a whole millisecond: a millisecond
    # past it, not on it.
    jumped = '<S t="0" d="30720" r="11" /><S t="430080" d="30720" />'
    manifest = tmp_path / "manifest.mpd"
    manifest.write_text(MUXED.replace('<S t="0" d="30720" r="12" />', jumped))
    end_after_the_media(manifest)
    assert duration_of(manifest) == "PT30.001S"


def test_without_a_timeline_the_duration_stays(tmp_path: Path):
    assert VIDEO_TIMELINE in MUXED
    without = MUXED.replace(VIDEO_TIMELINE, "")
    manifest = tmp_path / "manifest.mpd"
    manifest.write_text(without)
    end_after_the_media(manifest)
    assert manifest.read_text() == without
