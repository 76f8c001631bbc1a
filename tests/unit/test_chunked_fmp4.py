"""Chunked fMP4 outputs (fMP4 HLS, DASH, CMAF) without FFmpeg: the planner, the chunk's argv,
the checks on what a piece reports, the merge's join checks and the MPD and playlists it writes."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from xml.etree import ElementTree

import pytest
from kiln.v1 import job_pb2
from kiln.worker.v1 import worker_service_pb2 as wpb

from common.chunk_mpd import (
    LiveMpd,
    chunked_mpd,
    presentation_end,
    static_after_seconds,
    timeline_entries,
)
from common.hls_playlists import Rendition, SegmentEntry, media_playlist
from server.domain import worker_reports as reports
from server.jobs.chunk_plan import (
    FMP4_FRAME_GRID_NOTE,
    FMP4_TEXT_NOTE,
    OPUS_NOTE,
    ChunkSettings,
    plan_chunks,
)
from server.jobs.live_playlists import live_manifests
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
STARTED = datetime(2026, 12, 7, 12, 0, 0, tzinfo=UTC)
LIVE = LiveMpd(STARTED, STARTED + timedelta(seconds=9.5), delay_seconds=69.5)


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
    texts, _ = live_manifests(ladder("hls"), [_piece(0), None], None, has_audio=False, live=LIVE)
    assert '#EXT-X-MAP:URI="init_0.mp4"' in texts["v0/index.m3u8"]
    assert "#EXT-X-ENDLIST" not in texts["v0/index.m3u8"]
    # Live, players are told to start at the beginning; the final playlist needs not say so.
    assert "#EXT-X-START:TIME-OFFSET=0" in texts["v0/index.m3u8"]
    assert "EXT-X-START" not in final


# --- play while encoding: the dynamic MPD and the audio so far -----------------------------------


def _audio_so_far(count: int, *, start: int = 0) -> wpb.RenditionPart:
    """An fMP4 AUDIO piece's report while it runs: `count` 2 s segments of 48 kHz."""
    length = 2 * 48000
    return wpb.RenditionPart(
        name="audio",
        codec="mp4a.40.2",
        segments=[
            wpb.Segment(path=f"audio/seg_{n:05d}.m4s", duration_seconds=2, size_bytes=300)
            for n in range(count)
        ],
        init_path="audio/init.mp4",
        init_sha256=DIGEST,
        init_size_bytes=600,
        timescale=48000,
        decode_times=[start + n * length for n in range(count)],
        decode_durations=[length] * count,
    )


def _timelines(text: str) -> dict[str, list[tuple[int, int]]]:
    """Each Representation's (t, d) per segment, t filled in where the MPD leaves it out."""
    root = ElementTree.fromstring(text)
    found = {}
    for representation in root.iterfind(".//mpd:Representation", MPD):
        spans, at = [], 0
        for entry in representation.iterfind(".//mpd:S", MPD):
            at = int(entry.get("t", at))
            for _ in range(int(entry.get("r", "0")) + 1):
                spans.append((at, int(entry.get("d", "0"))))
                at += int(entry.get("d", "0"))
        found[representation.get("id", "")] = spans
    return found


def test_the_live_mpd_is_dynamic_and_lists_the_chunks_done_from_the_start():
    audio = wpb.ChunkResult(renditions=[_audio_so_far(3)])
    chunks = [_piece(0, ("v0", "v1")), None, _piece(2, ("v0", "v1"))]
    texts, files = live_manifests(ladder("dash"), chunks, audio, has_audio=True, live=LIVE)
    # DASH: no playlists, only the MPD.
    assert list(texts) == ["manifest.mpd"]
    root = ElementTree.fromstring(texts["manifest.mpd"])
    assert root.get("type") == "dynamic"
    assert root.get("availabilityStartTime") == "2026-12-07T12:00:00.000Z"
    assert root.get("publishTime") == "2026-12-07T12:00:09.500Z"
    assert root.get("minimumUpdatePeriod") == "PT2.000S"
    assert root.get("suggestedPresentationDelay") == "PT70S"
    assert (
        root.get("mediaPresentationDuration") is None and root.get("timeShiftBufferDepth") is None
    )
    assert root.get("profiles") == "urn:mpeg:dash:profile:isoff-live:2011"
    timing = root.find("mpd:UTCTiming", MPD)
    assert timing is not None and timing.get("value") == "2026-12-07T12:00:09.500Z"
    templates = root.findall(".//mpd:SegmentTemplate", MPD)
    assert {t.get("availabilityTimeOffset") for t in templates} == {"INF"}
    # The first chunk's six segments (the third chunk waits for the second), and the audio's
    # three so far.
    expected = [(n * TWO_SECONDS, TWO_SECONDS) for n in range(6)]
    assert _timelines(texts["manifest.mpd"]) == {
        "v0": expected,
        "v1": expected,
        "audio": [(n * 96000, 96000) for n in range(3)],
    }
    listed = {f.path for f in files}
    assert "manifest.mpd" in listed and "audio/init.mp4" not in listed  # the audio lists none
    assert "v0/seg_00005.m4s" in listed and "v0/seg_00012.m4s" not in listed
    assert next(f for f in files if f.path == "manifest.mpd").mime_type == "application/dash+xml"


def test_the_live_mpd_is_read_again_every_two_seconds_at_most():
    # 6 s segments: players refresh every 2 s, and the merge's static MPD waits 3 s, not 7.
    spec = ladder("dash")
    spec.segments.duration_seconds = 6
    audio = wpb.ChunkResult(renditions=[_audio_so_far(3)])
    chunks = [_piece(0, ("v0", "v1")), None, None]
    texts, _ = live_manifests(spec, chunks, audio, has_audio=True, live=LIVE)
    root = ElementTree.fromstring(texts["manifest.mpd"])
    assert root.get("minimumUpdatePeriod") == "PT2.000S"
    assert static_after_seconds(6) == 3.0
    # Shorter segments: one segment, as before.
    assert static_after_seconds(1.5) == 2.5


def test_the_live_mpd_waits_for_audio_and_never_shows_a_gap():
    chunks = [_piece(0), _piece(1)]
    texts, _ = live_manifests(ladder("cmaf"), chunks, None, has_audio=True, live=LIVE)
    # CMAF: the live playlists too; neither the master nor the MPD before the audio has one.
    assert "v0/index.m3u8" in texts and "master.m3u8" not in texts
    assert "manifest.mpd" not in texts
    audio = wpb.ChunkResult(renditions=[_audio_so_far(1)])
    texts, _ = live_manifests(ladder("cmaf"), chunks, audio, has_audio=True, live=LIVE)
    assert {"master.m3u8", "audio/index.m3u8", "manifest.mpd"} <= set(texts)
    assert len(_timelines(texts["manifest.mpd"])["v0"]) == 12
    # A chunk that does not start where the one before ends (the merge fails that output)
    # is left out of the live lists, and so is everything after it.
    gap = _piece(1)
    gap.renditions[0].decode_times[:] = [t + 512 for t in gap.renditions[0].decode_times]
    texts, _ = live_manifests(ladder("cmaf"), [_piece(0), gap], audio, has_audio=True, live=LIVE)
    assert len(_timelines(texts["manifest.mpd"])["v0"]) == 6
    assert texts["v0/index.m3u8"].count("#EXTINF") == 6
    other = _piece(1)
    other.renditions[0].init_sha256 = "cd" * 32
    texts, _ = live_manifests(ladder("dash"), [_piece(0), other], audio, has_audio=True, live=LIVE)
    assert len(_timelines(texts["manifest.mpd"])["v0"]) == 6
    # Every piece done (the merge not yet): still dynamic, and it says where it ends.
    ended = dataclasses.replace(LIVE, complete=True)
    texts, _ = live_manifests(ladder("dash"), [_piece(0)], audio, has_audio=True, live=ended)
    root = ElementTree.fromstring(texts["manifest.mpd"])
    assert root.get("type") == "dynamic" and root.get("mediaPresentationDuration") == "PT12.001S"
    # Without audio, the first chunk is enough; an HLS output gets no MPD.
    texts, _ = live_manifests(ladder("dash"), [_piece(0)], None, has_audio=False, live=LIVE)
    assert list(texts) == ["manifest.mpd"]
    texts, _ = live_manifests(ladder("hls"), [_piece(0)], audio, has_audio=True, live=LIVE)
    assert "manifest.mpd" not in texts and "master.m3u8" in texts


def test_the_presentation_ends_after_the_last_sample():
    # The 26 s clip's audio ends at 1248256 / 48000 = 26.005333 s: 26.005 would end the
    # Period inside its last packet, where the playhead rests before `ended`.
    assert presentation_end(Fraction(1248256, 48000)) == Fraction(26006, 1000)
    # On a whole millisecond: the next one, not the same.
    assert presentation_end(Fraction(6)) == Fraction(6001, 1000)
    for ticks in (1, 511, 512, 30720 * 13, 30720 * 13 + 1):
        media = Fraction(ticks, 15360)
        assert media < presentation_end(media) <= media + Fraction(1, 1000), ticks


def test_the_static_mpd_has_no_live_timing():
    root = ElementTree.fromstring(chunked_mpd([rendition("v0", 0, 3)], None, segment_seconds=2))
    assert root.get("type") == "static" and root.get("mediaPresentationDuration") == "PT6.001S"
    assert root.get("availabilityStartTime") is None and root.find("mpd:UTCTiming", MPD) is None
    template = root.find(".//mpd:SegmentTemplate", MPD)
    assert template is not None and template.get("availabilityTimeOffset") is None


@pytest.mark.parametrize("kind", ["hls", "dash", "cmaf"])
def test_fmp4_audio_so_far_is_taken_with_its_init_segment(kind):
    assert reports.audio_so_far_problems(_audio_so_far(3), ladder(kind)) == []


def _forged(change) -> wpb.RenditionPart:
    part = _audio_so_far(3)
    change(part)
    return part


FORGED_AUDIO = {
    "a gap in decode times": lambda p: p.decode_times.__setitem__(2, p.decode_times[2] + 1),
    "no init segment": lambda p: p.ClearField("init_path"),
    "no init size": lambda p: p.ClearField("init_size_bytes"),
    "no init digest": lambda p: p.ClearField("init_sha256"),
    "an init outside the rendition": lambda p: setattr(p, "init_path", "v0/init_0.mp4"),
    "an init outside the output": lambda p: setattr(p, "init_path", "audio/../../x/init.mp4"),
    "a segment outside the output": lambda p: setattr(p.segments[0], "path", "../seg_00000.m4s"),
    "an MPEG-TS name": lambda p: setattr(p.segments[1], "path", "audio/seg_00001.ts"),
    "a decode time per segment missing": lambda p: p.decode_durations.pop(),
    "a length its duration disagrees with": lambda p: setattr(p.segments[0], "duration_seconds", 3),
    "no timescale": lambda p: p.ClearField("timescale"),
}


@pytest.mark.parametrize("what", list(FORGED_AUDIO))
def test_fmp4_audio_so_far_that_cannot_be_is_refused(what):
    assert reports.audio_so_far_problems(_forged(FORGED_AUDIO[what]), ladder("dash")), what


def test_ts_audio_so_far_reports_no_fmp4_facts_and_mp4_none_at_all():
    ts = wpb.RenditionPart(
        name="audio",
        codec="mp4a.40.2",
        segments=[wpb.Segment(path="audio/seg_00000.ts", duration_seconds=2, size_bytes=300)],
    )
    assert reports.audio_so_far_problems(ts, ladder("ts")) == []
    ts.init_size_bytes = 600
    assert reports.audio_so_far_problems(ts, ladder("ts"))
    # fMP4 segments on an MPEG-TS ladder, and the other way round.
    assert reports.audio_so_far_problems(_audio_so_far(1), ladder("ts"))
    mp4 = job_pb2.OutputSpec(type=job_pb2.OUTPUT_TYPE_MP4, video=ladder("ts").video)
    assert reports.audio_so_far_problems(_audio_so_far(1), mp4)
