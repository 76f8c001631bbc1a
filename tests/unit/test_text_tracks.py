"""Text tracks without I/O: cues read, escaped, clipped and cut into HLS segments; language tags;
a probed input's subtitle streams judged (image-based ones refused)."""

from __future__ import annotations

from pathlib import Path

import pytest
from kiln.v1 import job_pb2

from common.languages import language_of, language_problem, same_language
from server.domain.text_track_checks import input_stream_problem
from worker.media.cues import Cue, clip_cues, parse_srt, parse_webvtt, segment_webvtt
from worker.media.errors import MediaError
from worker.media.ladder import ladder_filter_graph
from worker.media.ladder_rungs import LadderRung
from worker.media.text_tracks import (
    PreparedTrack,
    burned_in_filter,
    carried,
    progressive_text_args,
)

H264 = job_pb2.VIDEO_CODEC_H264


def test_font_tags_ffmpeg_writes_for_styles_are_dropped_from_converted_subrip():
    converted = '1\n00:00:00,500 --> 00:00:01,500\n<font size="20"><b>Hallo</b> Welt</font>\n'
    assert parse_srt(converted, "t", converted=True) == [Cue(0.5, 1.5, "<b>Hallo</b> Welt")]


def test_srt_cue_text_stays_text_except_b_i_u():
    (cue,) = parse_srt(
        '1\n00:00:01,000 --> 00:00:02,500\n<script>alert("x")</script> & <i>it</i>\n', "t"
    )
    assert cue == Cue(1.0, 2.5, '&lt;script&gt;alert("x")&lt;/script&gt; &amp; <i>it</i>')


def test_webvtt_escapes_are_read_once_and_written_once():
    text = "WEBVTT\n\nNOTE a note\n\nid\n00:01.000 --> 00:02.000 line:0\n<v Ann>a &amp; b</v> <c.x>&lt;tag&gt;</c>\n"
    assert parse_webvtt(text, "t") == [Cue(1.0, 2.0, "a &amp; b &lt;tag&gt;")]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("just words\n", "no timing line"),
        ("1\n00:00:03,000 --> 00:00:01,000\nx\n", "cue 1 ends"),
        (
            "1\n00:00:00,000 --> 00:00:02,000\na\n\n2\n00:00:01,000 --> 00:00:03,000\nb\n",
            "before cue 1 ends",
        ),
        (
            "1\n00:00:05,000 --> 00:00:06,000\na\n\n2\n00:00:01,000 --> 00:00:02,000\nb\n",
            "time order",
        ),
        ("1\n00:61:00,000 --> 00:62:00,000\na\n", "no timing line"),
        ("", "no timing line"),
    ],
)
def test_broken_srt_is_refused_with_the_reason(text, fragment):
    with pytest.raises(MediaError) as refused:
        parse_srt(text, "text_tracks[0]")
    assert refused.value.code == "TEXT_TRACK_INVALID"
    assert fragment in refused.value.message


def test_clip_shifts_cuts_and_drops():
    cues = [Cue(0.0, 0.5, "a"), Cue(0.8, 1.4, "b"), Cue(2.0, 3.0, "c"), Cue(4.0, 5.0, "d")]
    assert clip_cues(cues, 1.0, 2.5) == [Cue(0.0, 0.4, "b"), Cue(1.0, 2.0, "c")]


def test_segments_repeat_a_cue_in_every_segment_it_overlaps_and_map_the_timestamps():
    segments = segment_webvtt([Cue(0.5, 1.5, "a")], [1.0, 1.0, 1.0], 126000)
    assert [duration for _, duration in segments] == [1.0, 1.0, 1.0]
    assert all("X-TIMESTAMP-MAP=MPEGTS:126000,LOCAL:00:00:00.000" in t for t, _ in segments)
    assert ["00:00:00.500 --> 00:00:01.500" in t for t, _ in segments] == [True, True, False]


def test_language_tags():
    assert language_problem("pt-BR") is None and language_problem("zh-Hant-TW") is None
    assert language_problem("es-419") is None and language_problem("fre") is None
    assert "not a known language" in (language_problem("qq") or "")
    assert "not a BCP 47 tag" in (language_problem("en-toolongvariantx") or "")
    assert language_of("es-419").iso639_2 == "spa" and same_language("ger", "de-AT")


def test_progressive_tracks_are_extra_inputs_with_language_and_disposition(tmp_path):
    track = PreparedTrack(0, "fr", "Français", True, False, False, [], tmp_path / "0.vtt")
    inputs, outputs = progressive_text_args([track], job_pb2.OUTPUT_TYPE_MP4, 1)
    assert inputs == ["-f", "webvtt", "-i", str(tmp_path / "0.vtt")]
    assert outputs[:4] == ["-map", "1:0", "-c:s", "mov_text"]
    assert "language=fra" in outputs and outputs[-2:] == ["-disposition:s:0", "default"]
    # QuickTime's language table is keyed by the bibliographic codes.
    _, outputs = progressive_text_args([track], job_pb2.OUTPUT_TYPE_MOV, 1)
    assert "language=fre" in outputs


def _info(*streams: job_pb2.StreamInfo) -> job_pb2.InputInfo:
    return job_pb2.InputInfo(streams=[job_pb2.StreamInfo(index=0, kind="video"), *streams])


def _specs(track: job_pb2.TextTrack) -> list[job_pb2.OutputSpec]:
    return [job_pb2.OutputSpec(type=job_pb2.OUTPUT_TYPE_HLS, text_tracks=[track])]


def test_image_subtitles_asked_as_text_are_refused_after_probing():
    pgs = job_pb2.StreamInfo(index=3, kind="subtitle", codec="hdmv_pgs_subtitle", language="eng")
    error = input_stream_problem(
        _info(pgs), _specs(job_pb2.TextTrack(stream_index=3, language="en"))
    )
    assert error is not None and error.code == "INPUT_IMAGE_SUBTITLES"
    assert error.message.startswith("outputs[0].text_tracks[0]: stream 3 is hdmv_pgs_subtitle")
    by_language = job_pb2.TextTrack(stream_language="en", language="en")
    error = input_stream_problem(_info(pgs), _specs(by_language))
    assert error is not None and error.code == "INPUT_IMAGE_SUBTITLES"


def test_text_streams_pass_and_missing_ones_are_named():
    srt = job_pb2.StreamInfo(index=2, kind="subtitle", codec="subrip", language="fre")
    assert (
        input_stream_problem(
            _info(srt), _specs(job_pb2.TextTrack(stream_language="fr", language="fr"))
        )
        is None
    )
    error = input_stream_problem(
        _info(srt), _specs(job_pb2.TextTrack(stream_index=5, language="fr"))
    )
    assert error is not None and error.code == "INPUT_TEXT_STREAM_NOT_FOUND"
    assert "no stream 5 (its subtitle streams: 2 (subrip, fre))" in error.message


def test_a_burned_in_track_is_drawn_after_each_rungs_scaler_and_not_carried(tmp_path):
    burned = PreparedTrack(0, "en", "English", False, False, False, [], tmp_path / "0.vtt", True)
    kept = PreparedTrack(1, "fr", "French", False, False, False, [], tmp_path / "1.vtt")
    assert carried([burned, kept]) == [kept]
    drawn = burned_in_filter([burned, kept])
    assert drawn == f"subtitles=filename={tmp_path / '0.vtt'}"
    rungs = [
        LadderRung(0, job_pb2.VideoVariant(), H264, width, height, 15.0, 15)
        for width, height in ((320, 180), (160, 90))
    ]
    graph = ladder_filter_graph(0, rungs, "16/9", burn_in=drawn)
    assert graph.count(f"setdar=16/9,{drawn}[v") == 2
    assert burned_in_filter([kept]) is None
    # A scratch path with the graph's special characters is escaped at both levels.
    odd = PreparedTrack(0, "en", "E", False, False, False, [], Path("/s/a b:c,d'e[f]/0.vtt"), True)
    assert burned_in_filter([odd]) == "subtitles=filename=/s/a b\\\\:c\\,d\\\\\\'e\\[f\\]/0.vtt"


def test_a_saved_presets_audio_type_with_text_tracks_fails_the_job_not_the_input():
    spec = job_pb2.OutputSpec(
        type=job_pb2.OUTPUT_TYPE_M4A,
        text_tracks=[job_pb2.TextTrack(url="file:///m/fr.vtt", language="fr")],
    )
    error = input_stream_problem(_info(), [spec])
    assert error is not None and error.code == "OUTPUT_SPEC_UNSUPPORTED"
    assert "the preset makes M4A, which carries no text tracks" in error.message
