"""Chunked fMP4 outputs (fMP4 HLS, DASH, CMAF) without FFmpeg: the planner, the chunk's argv,
the checks on what a piece reports, the merge's join checks and the MPD and playlists it writes."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from xml.etree import ElementTree

import pytest
from kiln.v1 import job_pb2
from kiln.worker.v1 import worker_service_pb2 as wpb

from common.hls_playlists import Rendition, SegmentEntry, media_playlist
from server.domain import worker_reports as reports
from server.jobs.chunk_plan import (
    FMP4_FRAME_GRID_NOTE,
    FMP4_TEXT_NOTE,
    OPUS_NOTE,
    ChunkSettings,
    plan_chunks,
)
from server.jobs.live_playlists import live_playlists
from worker.media.chunk_mpd import chunked_mpd, timeline_entries
from worker.media.chunks import ChunkWindow, build_audio_command, build_video_chunk_command
from worker.media.errors import ENCODE_FAILED, MediaError
from worker.media.merge import joined_renditions

H264 = job_pb2.VIDEO_CODEC_H264
# First chunk as long as the others: the grid alone (the short first chunk is tested below).
SETTINGS = ChunkSettings(threshold_seconds=10, chunk_seconds=12, first_chunk_seconds=0)
SCALE = 15360
TWO_SECONDS = 2 * SCALE
DIGEST = "ab" * 32
MPD = {"mpd": "urn:mpeg:dash:schema:mpd:2011"}


def info(seconds: float = 60, frame_rate: float = 30) -> job_pb2.InputInfo:
    return job_pb2.InputInfo(
        duration_seconds=seconds,
        streams=[
            job_pb2.StreamInfo(kind="video", width=320, height=180, frame_rate=frame_rate),
            job_pb2.StreamInfo(index=1, kind="audio", channels=1, sample_rate=48000),
        ],
    )


def ladder(kind: str) -> job_pb2.OutputSpec:
    spec = job_pb2.OutputSpec(
        type=job_pb2.OUTPUT_TYPE_DASH if kind == "dash" else job_pb2.OUTPUT_TYPE_HLS,
        video=[
            job_pb2.VideoVariant(codec=H264, resolution="96x54"),
            job_pb2.VideoVariant(codec=H264, resolution="160x90"),
        ],
        segments=job_pb2.SegmentSpec(duration_seconds=2),
    )
    if kind == "cmaf":
        spec.type = job_pb2.OUTPUT_TYPE_CMAF
    if kind == "hls":
        spec.hls.segment_format = job_pb2.HLS_SEGMENT_FORMAT_FMP4
    return spec


# --- planner and argv ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["hls", "dash", "cmaf"])
def test_fmp4_ladders_are_chunked_on_segment_boundaries_without_a_lead(kind):
    decision = plan_chunks(ladder(kind), info(60), SETTINGS)
    assert [(c.start_seconds, c.first_segment) for c in decision.chunks] == [
        (0, 0),
        (12, 6),
        (24, 12),
        (36, 18),
        (48, 24),
    ]
    # The segments' decode times are set exactly (frag_discont): no lead to account for.
    assert {c.timestamp_offset_seconds for c in decision.chunks} == {0.0}
    # MPEG-TS chunks keep their lead (ladder("ts") is MPEG-TS HLS).
    ts = plan_chunks(ladder("ts"), info(60), SETTINGS)
    assert ts.chunks[0].timestamp_offset_seconds == 10.0


@pytest.mark.parametrize("kind", ["hls", "dash", "cmaf"])
def test_fmp4_ladders_start_with_a_short_first_chunk(kind):
    """The default first chunk (one 2 s segment here): playable early, then the grid from it."""
    settings = ChunkSettings(threshold_seconds=10, chunk_seconds=12, first_chunk_seconds=2)
    decision = plan_chunks(ladder(kind), info(60), settings)
    assert [(c.start_seconds, c.first_segment) for c in decision.chunks] == [
        (0, 0),
        (2, 1),
        (14, 7),
        (26, 13),
        (38, 19),
        (50, 25),
    ]


def test_fmp4_ladders_with_text_opus_or_chunks_between_frames_run_in_one_pass():
    titled = ladder("dash")
    titled.text_tracks.add(url="file:///m/fr.vtt", language="fr")
    decision = plan_chunks(titled, info(60), SETTINGS)
    assert decision.chunks == [] and decision.note == FMP4_TEXT_NOTE
    opus = ladder("dash")
    opus.audio.codec = job_pb2.AUDIO_CODEC_OPUS
    decision = plan_chunks(opus, info(60), SETTINGS)
    assert decision.chunks == [] and decision.note == OPUS_NOTE
    # 12 s is 287.7 frames at 23.976 fps: a chunk would start between two frames.
    decision = plan_chunks(ladder("cmaf"), info(60, frame_rate=24000 / 1001), SETTINGS)
    assert decision.chunks == [] and decision.note == FMP4_FRAME_GRID_NOTE
    assert len(plan_chunks(ladder("cmaf"), info(60, frame_rate=25), SETTINGS).chunks) == 5
    # MPEG-TS HLS keeps chunking its text tracks (the merge cuts them).
    ts = ladder("ts")
    ts.text_tracks.add(url="file:///m/fr.vtt", language="fr")
    assert len(plan_chunks(ts, info(60), SETTINGS).chunks) == 5


@pytest.mark.parametrize("kind", ["hls", "dash", "cmaf"])
def test_a_chunk_writes_fmp4_segments_at_their_place_in_the_output(kind, tmp_path):
    window = ChunkWindow(index=1, count=5, start=12, end=24, first_segment=6, timestamp_offset=0)
    argv = build_video_chunk_command(
        input_path="in.mp4", spec=ladder(kind), info=info(), out_dir=tmp_path, window=window
    ).plan.argv
    flags = "+cmaf+negative_cts_offsets" if kind == "cmaf" else "+negative_cts_offsets"
    assert argv[argv.index("-hls_segment_options") + 1] == f"movflags={flags}+frag_discont"
    assert argv[argv.index("-hls_segment_type") + 1] == "fmp4"
    assert argv[argv.index("-output_ts_offset") + 1] == "12"
    assert argv[argv.index("-start_number") + 1] == "6"
    assert argv[argv.index("-ss") + 1] == "12" and argv[argv.index("-t") + 1] == "12"
    assert str(tmp_path / "%v" / "seg_%05d.m4s") in argv
    audio = build_audio_command(
        input_path="in.mp4", spec=ladder(kind), info=info(), out_dir=tmp_path, timestamp_offset=0
    ).plan.argv
    # The audio starts at 0 with the video, as in a single pass.
    assert any("first_pts=1024" in argument for argument in audio)
    assert str(tmp_path / "audio" / "seg_%05d.m4s") in audio


# --- what a piece may report ---------------------------------------------------------------------


def _piece(index: int, names=("v0",)) -> wpb.ChunkResult:
    first = index * 6
    files, renditions = [], []
    for name in names:
        paths = [f"{name}/seg_{n:05d}.m4s" for n in range(first, first + 6)]
        init = "audio/init.mp4" if name == "audio" else f"{name}/init_{name[1:]}.mp4"
        files += [job_pb2.OutputFile(path=p, size_bytes=100) for p in paths]
        if index == 0 or name == "audio":
            files.append(job_pb2.OutputFile(path=init, size_bytes=700))
        renditions.append(
            wpb.RenditionPart(
                name=name,
                codec="avc1.64000d",
                segments=[wpb.Segment(path=p, duration_seconds=2, size_bytes=100) for p in paths],
                init_path=init,
                init_sha256=DIGEST,
                timescale=SCALE,
                decode_times=[(first + n) * TWO_SECONDS for n in range(6)],
                decode_durations=[TWO_SECONDS] * 6,
            )
        )
    return wpb.ChunkResult(files=files, encoded_seconds=12, renditions=renditions)


def _problems(result: wpb.ChunkResult, index: int = 1, kind: str = "dash") -> list[str]:
    chunk = plan_chunks(ladder(kind), info(60), SETTINGS).chunks[index]
    return reports.chunk_problems(result, ladder(kind), chunk, audio=False, output_seconds=60)


@pytest.mark.parametrize("kind", ["hls", "dash", "cmaf"])
def test_good_fmp4_pieces_pass(kind):
    assert _problems(_piece(0, ("v0", "v1")), index=0, kind=kind) == []
    assert _problems(_piece(1, ("v0", "v1")), index=1, kind=kind) == []


def test_only_the_first_chunk_may_store_an_init_segment():
    late = _piece(1)
    late.files.append(job_pb2.OutputFile(path="v0/init_0.mp4", size_bytes=700))
    assert any("not one this piece may write" in p for p in _problems(late))
    missing = _piece(0)
    del missing.files[-1]
    assert any("not a reported file" in p for p in _problems(missing, index=0))
    one = _piece(0)
    one.files[-1].path = one.renditions[0].init_path = "v0/init.mp4"  # one variant's name
    assert _problems(one, index=0) == []
    for bad in ("v0/init_1.mp4", "v1/init_1.mp4", "v9/init.mp4", "../init_0.mp4", ""):
        wrong = _piece(1)
        wrong.renditions[0].init_path = bad
        assert any("names init segment" in p for p in _problems(wrong)), bad


def test_ts_segments_and_fmp4_facts_do_not_mix():
    ts = _piece(1)
    assert any("not one this piece may write" in p for p in _problems(ts, kind="ts"))
    mpegts = ladder("ts")
    chunk = plan_chunks(mpegts, info(60), SETTINGS).chunks[1]
    paths = [f"v0/seg_{n:05d}.ts" for n in range(6, 12)]
    claimed = wpb.ChunkResult(
        files=[job_pb2.OutputFile(path=p, size_bytes=100) for p in paths],
        encoded_seconds=12,
        renditions=[
            wpb.RenditionPart(
                name="v0",
                codec="avc1.64000d",
                segments=[wpb.Segment(path=p, duration_seconds=2, size_bytes=100) for p in paths],
                timescale=SCALE,
            )
        ],
    )
    problems = reports.chunk_problems(claimed, mpegts, chunk, audio=False, output_seconds=60)
    assert any("fMP4 facts for MPEG-TS" in p for p in problems)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: setattr(r, "init_sha256", "not hex"), "no init segment digest"),
        (lambda r: setattr(r, "timescale", 0), "impossible timescale"),
        (lambda r: setattr(r, "timescale", 10**9), "impossible timescale"),
        (lambda r: r.decode_times.pop(), "every segment"),
        (lambda r: r.decode_durations.__setitem__(2, 0), "impossible decode time"),
        (lambda r: r.decode_times.__setitem__(0, -5), "impossible decode time"),
        (lambda r: r.decode_times.__setitem__(3, 1), "does not start where"),
        (lambda r: r.decode_durations.__setitem__(5, 3 * SCALE), "by its decode times"),
    ],
)
def test_impossible_fmp4_facts_are_refused(change, message):
    bad = _piece(1)
    change(bad.renditions[0])
    assert any(message in p for p in _problems(bad)), _problems(bad)


def test_a_dash_merge_writes_the_mpd_and_no_playlists():
    piece = _piece(0)
    plan = wpb.MergePlan(chunks=[piece])
    mpd = job_pb2.OutputFile(path="manifest.mpd", size_bytes=5)
    master = job_pb2.OutputFile(path="master.m3u8", size_bytes=5)
    done = wpb.TranscodeResult(files=[mpd, *piece.files])
    assert reports.merge_problems(done, ladder("dash"), plan) == []
    assert reports.merge_problems(done, ladder("hls"), plan)  # HLS writes no MPD
    both = wpb.TranscodeResult(files=[mpd, master, *piece.files])
    assert reports.merge_problems(both, ladder("cmaf"), plan) == []
    assert reports.merge_problems(both, ladder("dash"), plan)


# --- the merge -----------------------------------------------------------------------------------


def rendition(
    name: str, first: int, count: int, *, digest: str = DIGEST, gap: int = 0
) -> Rendition:
    return Rendition(
        name=name,
        codec="avc1.64000d",
        width=160,
        height=90,
        frame_rate=30.0,
        segments=[
            SegmentEntry(
                f"{name}/seg_{n:05d}.m4s", 2.0, 1000 + n, n * TWO_SECONDS + gap, TWO_SECONDS
            )
            for n in range(first, first + count)
        ],
        init_path=f"{name}/init_{name[1:]}.mp4",
        init_sha256=digest,
        timescale=SCALE,
    )


def test_joined_fmp4_renditions_keep_the_first_init_and_every_segment():
    joined = joined_renditions([[rendition("v0", 0, 6)], [rendition("v0", 6, 4)]])
    assert [s.decode_time for s in joined["v0"].segments] == [n * TWO_SECONDS for n in range(10)]
    assert joined["v0"].init_path == "v0/init_0.mp4"


def test_a_chunk_with_another_init_or_a_gap_fails_the_merge():
    with pytest.raises(MediaError, match="another init segment") as raised:
        joined_renditions([[rendition("v0", 0, 6)], [rendition("v0", 6, 4, digest="cd" * 32)]])
    assert raised.value.code == ENCODE_FAILED
    with pytest.raises(MediaError, match="not where"):
        joined_renditions([[rendition("v0", 0, 6)], [rendition("v0", 6, 4, gap=512)]])


def test_the_mpd_states_each_segments_decode_time_and_length(tmp_path: Path):
    video = [rendition("v0", 0, 30), dataclasses.replace(rendition("v1", 0, 30), width=320)]
    lengths = [96256, 96256, 96256, 95232] * 7 + [96256, 96256]
    audio_segments, start = [], 0
    for n, length in enumerate(lengths):
        audio_segments.append(
            SegmentEntry(f"audio/seg_{n:05d}.m4s", length / 48000, 300, start, length)
        )
        start += length
    audio = Rendition(
        "audio", "mp4a.40.2", 0, 0, 0.0, audio_segments, "audio/init.mp4", DIGEST, 48000
    )
    root = ElementTree.fromstring(chunked_mpd(video, audio, segment_seconds=2))
    assert root.get("mediaPresentationDuration") == "PT60.011S"
    sets = root.findall(".//mpd:AdaptationSet", MPD)
    assert [s.get("contentType") for s in sets] == ["video", "audio"]
    assert sets[0].get("maxWidth") == "320"
    for representation in root.iterfind(".//mpd:Representation", MPD):
        template = representation.find("mpd:SegmentTemplate", MPD)
        assert template is not None
        name = representation.get("id", "")
        assert template.get("initialization") == (
            "audio/init.mp4" if name == "audio" else f"{name}/init_{name[1:]}.mp4"
        )
        assert template.get("media") == f"{name}/seg_$Number%05d$.m4s"
        total = 0
        for entry in template.iterfind(".//mpd:S", MPD):
            total += int(entry.get("d", "0")) * (int(entry.get("r", "0")) + 1)
        expected = sum(lengths) if name == "audio" else 30 * TWO_SECONDS
        assert total == expected
        assert int(representation.get("bandwidth", "0")) > 0


def test_a_timeline_restates_t_only_where_a_segment_does_not_follow_on():
    segments = [
        SegmentEntry("v0/seg_00000.m4s", 2, 1, 0, 100),
        SegmentEntry("v0/seg_00001.m4s", 2, 1, 100, 100),
        SegmentEntry("v0/seg_00002.m4s", 2, 1, 200, 50),
        SegmentEntry("v0/seg_00003.m4s", 2, 1, 300, 50),
    ]
    assert timeline_entries(segments) == [
        '<S t="0" d="100" r="1"/>',
        '<S d="50"/>',
        '<S t="300" d="50"/>',
    ]


def test_fmp4_playlists_name_the_init_segment_live_and_at_the_end():
    segments = rendition("v0", 0, 2).segments
    final = media_playlist(segments, target_seconds=2, ended=True, init_path="v0/init_0.mp4")
    assert '#EXT-X-MAP:URI="init_0.mp4"' in final and "#EXT-X-VERSION:7" in final
    ts = media_playlist(segments, target_seconds=2, ended=True)
    assert "EXT-X-MAP" not in ts and "#EXT-X-VERSION:3" in ts
    texts, _ = live_playlists(ladder("hls"), [_piece(0), None], None, has_audio=False)
    assert '#EXT-X-MAP:URI="init_0.mp4"' in texts["v0/index.m3u8"]
    assert "#EXT-X-ENDLIST" not in texts["v0/index.m3u8"]
