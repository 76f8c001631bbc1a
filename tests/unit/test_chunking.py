"""The chunk planner and the checks on what chunk, audio and merge tasks report."""

from __future__ import annotations

from pathlib import Path

import pytest
from kiln.v1 import job_pb2
from kiln.worker.v1 import worker_service_pb2 as wpb

from common.hls_playlists import Rendition, SegmentEntry, master_playlist, media_playlist
from server.domain import worker_reports as reports
from server.domain.states import TaskKind
from server.jobs.chunk_plan import BURN_IN_NOTE, UNEVEN_FRAMES_NOTE, ChunkSettings, plan_chunks
from server.jobs.task_plan import output_pieces
from worker.media.chunks import ChunkWindow, build_video_chunk_command
from worker.media.ts_mux import VariantToMux, build_mux_command, concat_listing, cut_times

H264 = job_pb2.VIDEO_CODEC_H264
# Every chunk as long as the others (the first chunk's own length is tested on its own).
SETTINGS = ChunkSettings(threshold_seconds=10, chunk_seconds=12, first_chunk_seconds=0)


def info(seconds: float = 60, vfr: bool = False, audio: bool = True) -> job_pb2.InputInfo:
    streams = [
        job_pb2.StreamInfo(
            kind="video", width=320, height=180, frame_rate=30, variable_frame_rate=vfr
        )
    ]
    if audio:
        streams.append(job_pb2.StreamInfo(index=1, kind="audio", channels=1))
    return job_pb2.InputInfo(duration_seconds=seconds, streams=streams)


def hls(segment: float = 5, fmp4: bool = False) -> job_pb2.OutputSpec:
    spec = job_pb2.OutputSpec(
        type=job_pb2.OUTPUT_TYPE_HLS,
        video=[job_pb2.VideoVariant(codec=H264, resolution="320x180")],
        segments=job_pb2.SegmentSpec(duration_seconds=segment),
    )
    if fmp4:
        spec.hls.segment_format = job_pb2.HLS_SEGMENT_FORMAT_FMP4
    return spec


MP4 = job_pb2.OutputSpec(
    type=job_pb2.OUTPUT_TYPE_MP4, video=[job_pb2.VideoVariant(codec=H264, resolution="240p")]
)


def test_hls_chunks_start_on_segment_boundaries():
    decision = plan_chunks(hls(segment=5), info(61), SETTINGS)
    # 12 s rounds to two 5 s segments: 10 s chunks; the 1 s tail joins the last chunk.
    assert [(c.start_seconds, c.end_seconds) for c in decision.chunks] == [
        (0, 10),
        (10, 20),
        (20, 30),
        (30, 40),
        (40, 50),
        (50, 61),
    ]
    assert [c.first_segment for c in decision.chunks] == [0, 2, 4, 6, 8, 10]
    assert decision.has_audio and all(c.count == 6 for c in decision.chunks)


def test_the_first_hls_chunk_is_short_and_the_grid_follows_it():
    settings = ChunkSettings(threshold_seconds=10, chunk_seconds=12)  # first chunk: 2 s
    decision = plan_chunks(hls(segment=5), info(61), settings)
    # One short first segment (0-2 s), then 10 s chunks of two 5 s segments from 2 s on.
    assert [(c.start_seconds, c.end_seconds, c.first_segment) for c in decision.chunks] == [
        (0, 2, 0),
        (2, 12, 1),
        (12, 22, 3),
        (22, 32, 5),
        (32, 42, 7),
        (42, 52, 9),
        (52, 61, 11),
    ]
    # At least a segment: whole segments, never longer than the other chunks.
    two = ChunkSettings(threshold_seconds=10, chunk_seconds=12, first_chunk_seconds=9)
    starts = [(c.start_seconds, c.first_segment) for c in plan_chunks(hls(5), info(61), two).chunks]
    assert starts[:3] == [(0, 0), (10, 2), (20, 4)]
    longer = ChunkSettings(threshold_seconds=10, chunk_seconds=12, first_chunk_seconds=60)
    assert plan_chunks(hls(5), info(61), longer).chunks[1].start_seconds == 10
    # A progressive output has nothing to play early: its chunks stay equal.
    assert [c.start_seconds for c in plan_chunks(MP4, info(60), settings).chunks][:2] == [0, 12]


def test_the_audio_and_the_first_chunk_are_claimed_first():
    decision = plan_chunks(hls(segment=5), info(61), ChunkSettings(10, 12))
    pieces = output_pieces(decision)
    order = [(kind, chunk.index if chunk else None) for kind, chunk in pieces]
    assert order[:2] == [(TaskKind.AUDIO, 0), (TaskKind.CHUNK, 0)]
    # Then longest first: the 9 s last chunk after the 10 s ones.
    assert [index for _, index in order[2:]] == [1, 2, 3, 4, 5, 6]
    # An MP4's 62 s: the first chunk, then the 14 s last one (its 2 s tail joined it).
    mp4 = [c for _, c in output_pieces(plan_chunks(MP4, info(62), SETTINGS)) if c]
    assert [(c.index, c.end_seconds - c.start_seconds) for c in mp4[1:3]] == [(0, 12), (4, 14)]


def test_ts_chunks_are_encoded_without_b_frames():
    spec = hls(segment=2)
    spec.video.add(codec=H264, resolution="160x90")
    command = build_video_chunk_command(
        input_path="in.mp4",
        spec=spec,
        info=info(60),
        out_dir=Path("/tmp/out"),
        window=ChunkWindow(index=1, count=5, start=2, end=14, first_segment=1, timestamp_offset=10),
    )
    argv = command.plan.argv
    # As in one pass: hls.js starts a TS timeline at the video's first decode time.
    assert [argv[argv.index(f"-bf:v:{n}") + 1] for n in (0, 1)] == ["0", "0"]
    assert argv[argv.index("-start_number") + 1] == "1"


def test_what_is_not_chunked():
    assert plan_chunks(MP4, info(9), SETTINGS).chunks == []  # short
    assert plan_chunks(MP4, info(60), SETTINGS, concatenated=True).chunks == []
    assert plan_chunks(MP4, info(60), ChunkSettings(0, 12)).chunks == []
    fps = job_pb2.OutputSpec()
    fps.CopyFrom(MP4)
    fps.video[0].fps = 24
    assert plan_chunks(fps, info(60), SETTINGS).chunks == []
    vp9 = job_pb2.OutputSpec()
    vp9.CopyFrom(MP4)
    vp9.video[0].codec = job_pb2.VIDEO_CODEC_VP9
    assert plan_chunks(vp9, info(60), SETTINGS).chunks == []


def test_uneven_frames_run_in_one_pass_with_a_note():
    decision = plan_chunks(MP4, info(60, vfr=True), SETTINGS)
    assert decision.chunks == [] and decision.note == UNEVEN_FRAMES_NOTE
    assert plan_chunks(MP4, info(5, vfr=True), SETTINGS).note == ""


def test_text_tracks_are_chunked_unless_one_is_burned_in():
    titled = job_pb2.OutputSpec()
    titled.CopyFrom(MP4)
    titled.text_tracks.add(url="file:///m/fr.vtt", language="fr")
    assert len(plan_chunks(titled, info(60), SETTINGS).chunks) == 5
    titled.text_tracks.add(url="file:///m/de.vtt", language="de", burn_in=True)
    decision = plan_chunks(titled, info(60), SETTINGS)
    assert decision.chunks == [] and decision.note == BURN_IN_NOTE


def _chunk(index: int = 1) -> wpb.ChunkRange:
    return plan_chunks(hls(segment=2), info(60), SETTINGS).chunks[index]


def _hls_result(paths: list[str], codec: str = "avc1.64000d") -> wpb.ChunkResult:
    files = [job_pb2.OutputFile(path=p, size_bytes=100) for p in paths]
    segments = [wpb.Segment(path=p, duration_seconds=2, size_bytes=100) for p in paths]
    return wpb.ChunkResult(
        files=files,
        encoded_seconds=12,
        renditions=[wpb.RenditionPart(name="v0", codec=codec, segments=segments)],
    )


def test_a_chunk_may_write_only_its_own_segments():
    own = [f"v0/seg_{n:05d}.ts" for n in range(6, 12)]
    assert (
        reports.chunk_problems(_hls_result(own), hls(2), _chunk(), audio=False, output_seconds=60)
        == []
    )
    for bad in ("v0/seg_00000.ts", "v1/seg_00006.ts", "audio/seg_00006.ts", "master.m3u8"):
        problems = reports.chunk_problems(
            _hls_result([*own[:-1], bad]), hls(2), _chunk(), audio=False, output_seconds=60
        )
        assert any("not one this piece may write" in p for p in problems), bad


def test_a_chunk_report_with_a_bad_codec_string_or_segment_is_refused():
    own = [f"v0/seg_{n:05d}.ts" for n in range(6, 12)]
    quoted = reports.chunk_problems(
        _hls_result(own, codec='avc1",X="'), hls(2), _chunk(), audio=False, output_seconds=60
    )
    assert any("RFC 6381" in p for p in quoted)
    unlisted = _hls_result(own)
    unlisted.renditions[0].segments[0].size_bytes = 7
    problems = reports.chunk_problems(unlisted, hls(2), _chunk(), audio=False, output_seconds=60)
    assert any("is not a reported file" in p for p in problems)
    short = _hls_result(own)
    short.encoded_seconds = 3
    problems = reports.chunk_problems(short, hls(2), _chunk(), audio=False, output_seconds=60)
    assert any("far below" in p for p in problems)


def test_progressive_pieces_write_one_named_file():
    chunk = plan_chunks(MP4, info(60), SETTINGS).chunks[2]
    good = wpb.ChunkResult(
        files=[job_pb2.OutputFile(path="chunks/chunk_00002.mp4", size_bytes=9)], encoded_seconds=12
    )
    assert reports.chunk_problems(good, MP4, chunk, audio=False, output_seconds=60) == []
    good.files[0].path = "chunks/chunk_00003.mp4"
    assert reports.chunk_problems(good, MP4, chunk, audio=False, output_seconds=60)
    audio = wpb.ChunkResult(
        files=[job_pb2.OutputFile(path="chunks/audio.m4a", size_bytes=9)], encoded_seconds=60
    )
    assert reports.chunk_problems(audio, MP4, chunk, audio=True, output_seconds=60) == []


def test_a_ts_merge_with_audio_reports_muxed_copies_of_the_video_segments():
    """MPEG-TS HLS with audio: each chunk's video segment gets its copy with the audio muxed
    in; the pieces' own segments stay (players that started on the live playlists read them
    to the end)."""
    video = wpb.ChunkResult(files=[job_pb2.OutputFile(path="v0/seg_00000.ts", size_bytes=5)])
    audio = wpb.ChunkResult(files=[job_pb2.OutputFile(path="audio/seg_00000.ts", size_bytes=5)])
    plan = wpb.MergePlan(chunks=[video], audio=audio, has_audio=True)
    master = job_pb2.OutputFile(path="master.m3u8", size_bytes=5)
    muxed = job_pb2.OutputFile(path="v0/muxed_00000.ts", size_bytes=9)
    pieces = [*video.files, *audio.files]
    result = wpb.TranscodeResult(files=[master, muxed, *pieces])
    assert reports.merge_problems(result, hls(), plan) == []
    # The muxed copy left out; a piece's segment left out.
    without_muxed = wpb.TranscodeResult(files=[master, *pieces])
    assert "left out" in reports.merge_problems(without_muxed, hls(), plan)[0]
    without_audio = wpb.TranscodeResult(files=[master, muxed, *video.files])
    assert "left out" in reports.merge_problems(without_audio, hls(), plan)[0]
    # A muxed segment no chunk's video stands for.
    foreign = job_pb2.OutputFile(path="v0/muxed_00001.ts", size_bytes=9)
    assert reports.merge_problems(wpb.TranscodeResult(files=[*result.files, foreign]), hls(), plan)
    # Without audio nothing is muxed: a muxed segment is foreign there.
    silent = wpb.MergePlan(chunks=[video])
    assert reports.merge_problems(
        wpb.TranscodeResult(files=[master, muxed, *video.files]), hls(), silent
    )
    # fMP4 HLS keeps the chunks' segments as they are.
    fmp4_plan = wpb.MergePlan(
        chunks=[wpb.ChunkResult(files=[job_pb2.OutputFile(path="v0/seg_00000.m4s")])],
        audio=wpb.ChunkResult(files=[job_pb2.OutputFile(path="audio/seg_00000.m4s")]),
        has_audio=True,
    )
    kept = [*fmp4_plan.chunks[0].files, *fmp4_plan.audio.files]
    assert (
        reports.merge_problems(
            wpb.TranscodeResult(files=[master, *kept]), hls(fmp4=True), fmp4_plan
        )
        == []
    )


def test_the_audio_remux_cuts_at_each_video_segment_boundary(tmp_path):
    """The short first chunk: boundaries 2 s, then 6 s apart, from the first picture's
    timestamp (the 10 s lead and the 1.4 s muxer delay, in 90 kHz ticks)."""
    durations = [2.0, 6.0, 6.0, 3.5]
    rendition = Rendition(
        "v0",
        "avc1.64000d",
        160,
        90,
        30.0,
        [SegmentEntry(f"v0/seg_{n:05d}.ts", d, 100) for n, d in enumerate(durations)],
    )
    files = [tmp_path / "v0" / f"seg_{n:05d}.ts" for n in range(len(durations))]
    variant = VariantToMux(rendition, files, first_ticks=1026000)
    assert cut_times(variant) == ["13.400000", "19.400000", "25.400000"]
    plan = build_mux_command(
        variants=[variant],
        audio_files=[tmp_path / "audio" / "seg_00000.ts"],
        work_dir=tmp_path / "lists",
        out_dir=tmp_path / "out",
    )
    argv = plan.argv
    assert argv[argv.index("-segment_times") + 1] == "13.400000,19.400000,25.400000"
    assert (tmp_path / "lists" / "v0-segments.txt").read_text() == "".join(
        f"{file}\n" for file in files
    )
    assert [p.name for p in plan.outputs] == [f"muxed_{n:05d}.ts" for n in range(4)]
    assert plan.expected_duration == sum(durations)
    # A list entry is one line: a path with a line break (or a relative one) is refused.
    with pytest.raises(ValueError):
        concat_listing([tmp_path / "a\nb.ts"])
    with pytest.raises(ValueError):
        concat_listing([Path("v0/seg_00000.ts")])


def test_a_merge_must_list_every_segment_and_no_foreign_media():
    piece = wpb.ChunkResult(files=[job_pb2.OutputFile(path="v0/seg_00000.ts", size_bytes=5)])
    plan = wpb.MergePlan(chunks=[piece])
    master = job_pb2.OutputFile(path="master.m3u8", size_bytes=5)
    complete = wpb.TranscodeResult(files=[master, *piece.files])
    assert reports.merge_problems(complete, hls(), plan) == []
    assert "left out" in reports.merge_problems(wpb.TranscodeResult(files=[master]), hls(), plan)[0]
    foreign = wpb.TranscodeResult(
        files=[*complete.files, job_pb2.OutputFile(path="v0/seg_09999.ts", size_bytes=5)]
    )
    assert reports.merge_problems(foreign, hls(), plan)
    # The merge writes an HLS output's text renditions itself: its own tracks' only.
    titled = hls()
    titled.text_tracks.add(url="file:///m/fr.vtt", language="fr")
    subtitles = [
        job_pb2.OutputFile(path="text_0/index.m3u8", size_bytes=5),
        job_pb2.OutputFile(path="text_0/seg_00000.vtt", size_bytes=5),
    ]
    with_text = wpb.TranscodeResult(files=[*complete.files, *subtitles])
    assert reports.merge_problems(with_text, titled, plan) == []
    assert reports.merge_problems(with_text, hls(), plan)
    with_text.files[-1].path = "text_1/seg_00000.vtt"
    assert reports.merge_problems(with_text, titled, plan)
    leftover = wpb.TranscodeResult(
        files=[
            job_pb2.OutputFile(path="output.mp4", size_bytes=5),
            job_pb2.OutputFile(path="chunks/chunk_00000.mp4", size_bytes=5),
        ]
    )
    assert reports.merge_problems(leftover, MP4, plan)


def test_live_playlists_are_event_until_the_end():
    segments = [
        SegmentEntry("v0/seg_00000.ts", 2.0, 1000),
        SegmentEntry("v0/seg_00001.ts", 1.5, 500),
    ]
    live = media_playlist(segments, target_seconds=2, ended=False)
    assert "#EXT-X-PLAYLIST-TYPE:EVENT" in live and "#EXT-X-ENDLIST" not in live
    assert "seg_00001.ts" in live and "v0/" not in live
    final = media_playlist(segments, target_seconds=2, ended=True)
    assert final.endswith("#EXT-X-ENDLIST\n") and "TYPE:VOD" in final
    video = Rendition("v0", "avc1.64000d", 320, 180, 30.0, segments)
    audio = Rendition("audio", "mp4a.40.2", 0, 0, 0.0, [SegmentEntry("audio/seg_00000.ts", 2, 100)])
    master = master_playlist([video], audio)
    assert 'CODECS="avc1.64000d,mp4a.40.2"' in master and "BANDWIDTH=4400" in master


def test_the_audio_remux_lists_absolute_paths_from_a_relative_scratch_folder(tmp_path, monkeypatch):
    """`kiln up`'s scratch folder is var/scratch, relative: the lists FFmpeg reads must still
    name the files where they are (found through `kiln up`: the merge failed on it)."""
    monkeypatch.chdir(tmp_path)
    rendition = Rendition(
        "v0", "avc1.64000d", 160, 90, 30.0, [SegmentEntry("v0/seg_00000.ts", 2.0, 100)]
    )
    variant = VariantToMux(rendition, [Path("scratch/v0/seg_00000.ts")], first_ticks=0)
    build_mux_command(
        variants=[variant],
        audio_files=[Path("scratch/audio/seg_00000.ts")],
        work_dir=Path("scratch/lists"),
        out_dir=Path("scratch/out"),
    )
    lists = tmp_path / "scratch" / "lists"
    assert (lists / "v0-segments.txt").read_text() == f"{tmp_path}/scratch/v0/seg_00000.ts\n"
    assert (lists / "audio-segments.txt").read_text() == f"{tmp_path}/scratch/audio/seg_00000.ts\n"
