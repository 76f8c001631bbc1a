"""Adaptive ladders against the real ffmpeg, read back with the m3u8 and mpegdash parsers.

Each ladder is encoded once per module (a 7 s 640x360 30 fps source, 2 s segments, so every
rendition has three full segments and a 1 s last one) and then examined by several tests.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import m3u8
import pytest
from kiln.v1 import job_pb2
from mpegdash.parser import MPEGDASHParser

from tests.support.fmp4_boxes import fmp4_first_presentation
from worker.media.commands import build_command
from worker.media.describe import describe_output_file
from worker.media.ffmpeg import run_ffmpeg
from worker.media.packaging import finalize_output
from worker.media.plan import CommandPlan
from worker.media.probe import probe
from worker.media.text_tracks import first_timestamp

SOURCE_SECONDS = 7.0
FRAME_RATE = 30
SEGMENT_SECONDS = 2.0
ONE_FRAME = 1 / FRAME_RATE
EXPECTED_SIZES = [(640, 360), (426, 240), (320, 180)]
H264, H265, VP9, AV1 = (
    job_pb2.VIDEO_CODEC_H264,
    job_pb2.VIDEO_CODEC_H265,
    job_pb2.VIDEO_CODEC_VP9,
    job_pb2.VIDEO_CODEC_AV1,
)
APPLE_LADDER = ((H264, "360p"), (H265, "240p"), (H264, "320x180"))


def make_media(path: Path, *args: str) -> Path:
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args, str(path)],
        check=True,
        timeout=60,
    )
    return path


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("ladder-sources")
    video = ["-f", "lavfi", "-i", f"testsrc2=size=640x360:rate={FRAME_RATE}"]
    tone = ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]
    length = ["-t", str(SOURCE_SECONDS)]
    fast = ["-c:v", "libx264", "-preset", "ultrafast"]
    return {
        "with_audio": make_media(folder / "tone.mp4", *video, *tone, *length, *fast, "-c:a", "aac"),
        "silent": make_media(folder / "silent.mp4", *video, *length, *fast),
    }


@dataclass
class Ladder:
    out_dir: Path
    plan: CommandPlan
    finalize_notes: list[str]
    described: list[job_pb2.OutputFile]


def encode_ladder(source: Path, spec: job_pb2.OutputSpec, out_dir: Path) -> Ladder:
    """What worker/tasks/transcode.py does for a TRANSCODE task: build, run, finalize, describe all files."""

    async def run() -> Ladder:
        info = await probe(str(source))
        plan = build_command(input_path=str(source), spec=spec, info=info, out_dir=out_dir)
        await run_ffmpeg(
            plan.argv,
            duration=plan.expected_duration,
            on_progress=None,
            cancel_event=asyncio.Event(),
        )
        notes = await finalize_output(spec, info, out_dir, plan)
        files = await asyncio.to_thread(
            lambda: sorted(path for path in out_dir.rglob("*") if path.is_file())
        )
        described = [await describe_output_file(path, out_dir) for path in files]
        return Ladder(out_dir, plan, notes, described)

    return asyncio.run(run())


def ladder_spec(
    output_type: job_pb2.OutputType,
    variants: tuple[tuple[job_pb2.VideoCodec, str], ...],
    **fields: Any,
) -> job_pb2.OutputSpec:
    return job_pb2.OutputSpec(
        type=output_type,
        video=[job_pb2.VideoVariant(codec=codec, resolution=size) for codec, size in variants],
        segments=job_pb2.SegmentSpec(duration_seconds=SEGMENT_SECONDS),
        **fields,
    )


@pytest.fixture(scope="module")
def hls_ts(sources: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Ladder:
    # A fourth variant above the 640x360 source, which 360p already covers.
    spec = ladder_spec(job_pb2.OUTPUT_TYPE_HLS, (*APPLE_LADDER, (H264, "1080p")))
    return encode_ladder(sources["with_audio"], spec, tmp_path_factory.mktemp("hls-ts"))


@pytest.fixture(scope="module")
def hls_fmp4(sources: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Ladder:
    spec = ladder_spec(
        job_pb2.OUTPUT_TYPE_HLS,
        APPLE_LADDER,
        hls=job_pb2.HlsSpec(segment_format=job_pb2.HLS_SEGMENT_FORMAT_FMP4),
    )
    return encode_ladder(sources["with_audio"], spec, tmp_path_factory.mktemp("hls-fmp4"))


@pytest.fixture(scope="module")
def dash(sources: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Ladder:
    spec = ladder_spec(job_pb2.OUTPUT_TYPE_DASH, ((H264, "360p"), (VP9, "240p"), (AV1, "180p")))
    return encode_ladder(sources["with_audio"], spec, tmp_path_factory.mktemp("dash"))


@pytest.fixture(scope="module")
def cmaf(sources: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Ladder:
    spec = ladder_spec(job_pb2.OUTPUT_TYPE_CMAF, APPLE_LADDER)
    return encode_ladder(sources["with_audio"], spec, tmp_path_factory.mktemp("cmaf"))


@pytest.fixture(scope="module")
def silent_hls(sources: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Ladder:
    spec = ladder_spec(
        job_pb2.OUTPUT_TYPE_HLS,
        APPLE_LADDER[:2],
        hls=job_pb2.HlsSpec(segment_format=job_pb2.HLS_SEGMENT_FORMAT_FMP4),
    )
    return encode_ladder(sources["silent"], spec, tmp_path_factory.mktemp("hls-silent"))


# --- Helpers -------------------------------------------------------------------------------------


def files_referenced_by_hls(master_path: Path) -> set[Path]:
    """Every media playlist, init segment and segment the master playlist leads to."""
    master = m3u8.load(str(master_path))
    playlists = [master_path.parent / variant.uri for variant in master.playlists]
    playlists += [master_path.parent / media.uri for media in master.media if media.uri]
    referenced = set(playlists)
    for playlist_path in playlists:
        playlist = m3u8.load(str(playlist_path))
        referenced |= {playlist_path.parent / segment.uri for segment in playlist.segments}
        referenced |= {playlist_path.parent / init.uri for init in playlist.segment_map}
    return referenced


def segment_durations(playlist_path: Path) -> list[float]:
    return [segment.duration for segment in m3u8.load(str(playlist_path)).segments]


def assert_segments_of_target_length(durations: list[float]) -> None:
    assert len(durations) == 4  # 2 + 2 + 2 + 1 s
    for duration in durations[:-1]:
        assert abs(duration - SEGMENT_SECONDS) <= ONE_FRAME + 1e-6
    assert sum(durations) == pytest.approx(SOURCE_SECONDS, abs=2 * ONE_FRAME)


def ffprobe_start_time(path: Path) -> float:
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=start_time", "-of", "csv=p=0", path],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return float(result.stdout.strip())


def average_bitrate_of(playlist_path: Path) -> float:
    playlist = m3u8.load(str(playlist_path))
    size = sum((playlist_path.parent / segment.uri).stat().st_size for segment in playlist.segments)
    return size * 8 / sum(segment.duration for segment in playlist.segments)


def dash_files(manifest: Path) -> dict[str, list[Path]]:
    """Representation id → its init segment and media segments, from the SegmentTimeline."""
    mpd = MPEGDASHParser.parse(str(manifest))
    files: dict[str, list[Path]] = {}
    for adaptation_set in mpd.periods[0].adaptation_sets:
        for representation in adaptation_set.representations:
            template = representation.segment_templates[0]
            count = sum(
                1 + (entry.r or 0) for entry in template.segment_timelines[0].Ss
            )  # S@r repeats
            numbers = range(template.start_number, template.start_number + count)
            init = template.initialization.replace("$RepresentationID$", representation.id)
            media = template.media.replace("$RepresentationID$", representation.id)
            files[representation.id] = [
                manifest.parent / init,
                *(
                    manifest.parent / re.sub(r"\$Number%05d\$", f"{number:05d}", media)
                    for number in numbers
                ),
            ]
    return files


def timeline_durations(representation: object) -> list[float]:
    template = representation.segment_templates[0]  # type: ignore[attr-defined]
    durations = []
    for entry in template.segment_timelines[0].Ss:
        durations += [entry.d / template.timescale] * (1 + (entry.r or 0))
    return durations


# --- HLS -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("ladder_name", ["hls_ts", "hls_fmp4"])
def test_hls_master_lists_every_variant_with_measured_attributes(
    ladder_name: str, request: pytest.FixtureRequest
) -> None:
    ladder: Ladder = request.getfixturevalue(ladder_name)
    master = m3u8.load(str(ladder.out_dir / "master.m3u8"))

    assert [variant.stream_info.resolution for variant in master.playlists] == EXPECTED_SIZES
    codecs = [variant.stream_info.codecs.split(",") for variant in master.playlists]
    hevc_tag = "hev1" if ladder_name == "hls_ts" else "hvc1"
    assert re.fullmatch(r"avc1\.6400[0-9a-f]{2}", codecs[0][0])
    assert codecs[1][0].startswith(f"{hevc_tag}.1.6.L")  # Main profile
    assert re.fullmatch(r"avc1\.6400[0-9a-f]{2}", codecs[2][0])
    assert all(variant_codecs[1] == "mp4a.40.2" for variant_codecs in codecs)
    for variant in master.playlists:
        assert variant.stream_info.frame_rate == 30.0
        assert variant.stream_info.bandwidth >= variant.stream_info.average_bandwidth > 0


def test_fmp4_hls_audio_is_one_rendition_shared_by_every_variant(hls_fmp4: Ladder) -> None:
    ladder = hls_fmp4
    master = m3u8.load(str(ladder.out_dir / "master.m3u8"))

    audio = [media for media in master.media if media.type == "AUDIO"]
    assert len(audio) == 1
    assert audio[0].uri == "audio/index.m3u8"
    assert {variant.stream_info.audio for variant in master.playlists} == {audio[0].group_id}
    assert_segments_of_target_length(segment_durations(ladder.out_dir / audio[0].uri))


@pytest.mark.parametrize("ladder_name", ["hls_ts", "hls_fmp4"])
def test_hls_variants_cut_segments_at_the_same_times(
    ladder_name: str, request: pytest.FixtureRequest
) -> None:
    ladder: Ladder = request.getfixturevalue(ladder_name)
    folders = [ladder.out_dir / f"v{index}" for index in range(3)]

    durations = [segment_durations(folder / "index.m3u8") for folder in folders]

    assert durations[0] == durations[1] == durations[2]
    assert_segments_of_target_length(durations[0])


def test_ts_hls_variants_carry_their_own_audio(hls_ts: Ladder) -> None:
    master = m3u8.load(str(hls_ts.out_dir / "master.m3u8"))

    assert not [media for media in master.media if media.type == "AUDIO"]
    assert not (hls_ts.out_dir / "audio").exists()
    for variant in master.playlists:
        first_segment = hls_ts.out_dir / variant.uri.replace("index.m3u8", "seg_00000.ts")
        assert set(first_packet_times(first_segment)) == {"video", "audio"}


# --- Where audio and video start -----------------------------------------------------------------
# hls.js and dash.js report a gap (bufferSeekOverHole, injected silent frames) when a rendition
# starts later than another. Every rendition must start at the same instant: 0 in fMP4, the TS
# muxer's fixed 1.4 s offset in MPEG-TS (hls.js subtracts it).


def first_packet_times(path: Path) -> dict[str, float]:
    """ffprobe: codec type → presentation time of its first packet in a file or TS segment."""
    result = subprocess.run(
        [
            *("ffprobe", "-v", "error", "-show_entries", "packet=stream_index,pts_time"),
            *("-show_entries", "stream=index,codec_type", "-of", "json", path),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    parsed = json.loads(result.stdout)
    kinds = {stream["index"]: stream["codec_type"] for stream in parsed["streams"]}
    firsts: dict[str, float] = {}
    for packet in parsed["packets"]:
        firsts.setdefault(kinds[packet["stream_index"]], float(packet["pts_time"]))
    return firsts


def hls_fmp4_renditions(out_dir: Path) -> dict[str, tuple[Path, Path]]:
    return {
        folder.name: (next(folder.glob("init_*.mp4")), folder / "seg_00000.m4s")
        for folder in sorted(out_dir.iterdir())
        if folder.is_dir()
    }


def test_ts_audio_and_video_start_together(hls_ts: Ladder) -> None:
    starts = [
        first_packet_times(hls_ts.out_dir / f"v{index}" / "seg_00000.ts") for index in range(3)
    ]

    for start in starts:
        # No B-frames in TS: the first picture's decode and presentation times are one.
        assert start["audio"] == pytest.approx(start["video"], abs=1e-6)
    assert len({round(start["video"], 6) for start in starts}) == 1


@pytest.mark.parametrize("ladder_name", ["hls_fmp4", "dash", "cmaf"])
def test_fmp4_renditions_all_start_at_zero(
    ladder_name: str, request: pytest.FixtureRequest
) -> None:
    ladder: Ladder = request.getfixturevalue(ladder_name)
    if ladder_name == "hls_fmp4":
        renditions = hls_fmp4_renditions(ladder.out_dir)
    else:
        files = dash_files(ladder.out_dir / "manifest.mpd")
        renditions = {name: (paths[0], paths[1]) for name, paths in files.items()}

    starts = {name: fmp4_first_presentation(*pair) for name, pair in renditions.items()}

    assert len(starts) == 4  # three video renditions (H.264, H.265/VP9, AV1) and the audio
    assert all(start == pytest.approx(0, abs=1e-9) for start in starts.values()), starts


@pytest.mark.parametrize("ladder_name", ["hls_ts", "hls_fmp4", "dash", "cmaf"])
def test_text_is_mapped_to_the_first_picture_players_show(
    ladder_name: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """The 90 kHz instant a WebVTT X-TIMESTAMP-MAP (and a DASH sidecar's shift) ties the text's
    0 to is the first video picture's time as players read it: the TS muxer's 1.4 s, and in
    fMP4 the boxes' 0. ffprobe reads an fMP4 B-frame rendition's first picture a reordering
    delay later (its mov demuxer adds the largest negative composition offset to every time):
    text mapped to that showed 67 ms (two frames at 30 fps) after its pictures."""
    ladder: Ladder = request.getfixturevalue(ladder_name)
    init: Path | None = None
    if ladder_name == "hls_ts":
        segment = ladder.out_dir / "v0" / "seg_00000.ts"
        shown = first_packet_times(segment)["video"]
    else:
        if ladder_name == "hls_fmp4":
            init, segment = hls_fmp4_renditions(ladder.out_dir)["v0"]
        else:
            init, segment = dash_files(ladder.out_dir / "manifest.mpd")["0"][:2]
        shown = fmp4_first_presentation(init, segment)
        joined = tmp_path / "joined.mp4"
        joined.write_bytes(init.read_bytes() + segment.read_bytes())
        assert first_packet_times(joined)["video"] >= shown + ONE_FRAME  # B-frames, read late

    mapped = asyncio.run(first_timestamp(init, segment))

    assert mapped == round(shown * 90_000)


def test_ts_segments_of_every_variant_start_at_the_same_timestamp(hls_ts: Ladder) -> None:
    starts = [
        [ffprobe_start_time(path) for path in sorted((hls_ts.out_dir / f"v{i}").glob("*.ts"))]
        for i in range(3)
    ]

    assert len(starts[0]) == 4
    assert starts[0] == starts[1] == starts[2]


@pytest.mark.parametrize("ladder_name", ["hls_ts", "hls_fmp4"])
def test_hls_references_only_files_that_exist(
    ladder_name: str, request: pytest.FixtureRequest
) -> None:
    ladder: Ladder = request.getfixturevalue(ladder_name)

    referenced = files_referenced_by_hls(ladder.out_dir / "master.m3u8")

    assert all(path.is_file() for path in referenced)
    produced = {path for path in ladder.out_dir.rglob("*") if path.is_file()}
    assert produced == referenced | {ladder.out_dir / "master.m3u8"}


def test_hls_bandwidth_is_measured_from_the_segments(hls_fmp4: Ladder) -> None:
    master = m3u8.load(str(hls_fmp4.out_dir / "master.m3u8"))
    audio_average = average_bitrate_of(hls_fmp4.out_dir / "audio" / "index.m3u8")

    for variant in master.playlists:
        video_average = average_bitrate_of(hls_fmp4.out_dir / variant.uri)
        assert variant.stream_info.average_bandwidth == pytest.approx(
            video_average + audio_average, abs=2
        )


def test_variant_above_the_source_is_dropped_with_a_note(hls_ts: Ladder) -> None:
    assert hls_ts.plan.notes == ["variant 3: 1080p above source 640x360, dropped"]
    assert not (hls_ts.out_dir / "v3").exists()
    assert len(m3u8.load(str(hls_ts.out_dir / "master.m3u8")).playlists) == 3


def test_ladder_of_a_silent_source_has_no_audio_rendition(silent_hls: Ladder) -> None:
    master = m3u8.load(str(silent_hls.out_dir / "master.m3u8"))

    assert master.media == []
    assert [variant.stream_info.resolution for variant in master.playlists] == EXPECTED_SIZES[:2]
    for variant in master.playlists:
        assert variant.stream_info.audio is None
        assert "mp4a" not in variant.stream_info.codecs
        assert variant.stream_info.bandwidth >= variant.stream_info.average_bandwidth > 0
    assert not (silent_hls.out_dir / "audio").exists()
    assert segment_durations(silent_hls.out_dir / "v0" / "index.m3u8") == segment_durations(
        silent_hls.out_dir / "v1" / "index.m3u8"
    )


# --- DASH ----------------------------------------------------------------------------------------


def test_dash_manifest_has_video_and_audio_adaptation_sets(dash: Ladder) -> None:
    mpd = MPEGDASHParser.parse(str(dash.out_dir / "manifest.mpd"))
    video_set, audio_set = mpd.periods[0].adaptation_sets

    assert video_set.content_type == "video"
    sizes = [(rep.width, rep.height) for rep in video_set.representations]
    assert sizes == EXPECTED_SIZES
    codecs = [rep.codecs for rep in video_set.representations]
    assert codecs[0].startswith("avc1.6400")
    assert codecs[1].startswith("vp09.")
    assert codecs[2].startswith("av01.")
    assert audio_set.content_type == "audio"
    assert [rep.codecs for rep in audio_set.representations] == ["mp4a.40.2"]


def test_dash_video_representations_share_one_segment_timeline(dash: Ladder) -> None:
    mpd = MPEGDASHParser.parse(str(dash.out_dir / "manifest.mpd"))
    video_set = mpd.periods[0].adaptation_sets[0]

    timelines = [timeline_durations(rep) for rep in video_set.representations]

    assert timelines[0] == timelines[1] == timelines[2]
    assert_segments_of_target_length(timelines[0])


def test_dash_references_exactly_the_files_it_wrote(dash: Ladder) -> None:
    referenced = {
        path for paths in dash_files(dash.out_dir / "manifest.mpd").values() for path in paths
    }

    assert all(path.is_file() for path in referenced)
    produced = {path for path in dash.out_dir.rglob("*") if path.is_file()}
    assert produced == referenced | {dash.out_dir / "manifest.mpd"}


# --- CMAF ----------------------------------------------------------------------------------------


def test_cmaf_hls_and_dash_reference_the_same_segments(cmaf: Ladder) -> None:
    from_hls = files_referenced_by_hls(cmaf.out_dir / "master.m3u8")
    from_dash = {
        path for paths in dash_files(cmaf.out_dir / "manifest.mpd").values() for path in paths
    }

    media_files = {path for path in from_hls if path.suffix != ".m3u8"}
    assert media_files == from_dash
    assert all(path.is_file() for path in from_hls | from_dash)
    assert len(from_dash) == 4 * 5  # 3 variants and the audio, each an init and 4 segments


def test_cmaf_master_has_measured_codecs_for_every_variant(cmaf: Ladder) -> None:
    master = m3u8.load(str(cmaf.out_dir / "master.m3u8"))
    mpd = MPEGDASHParser.parse(str(cmaf.out_dir / "manifest.mpd"))

    assert [variant.stream_info.resolution for variant in master.playlists] == EXPECTED_SIZES
    hls_codecs = [variant.stream_info.codecs.split(",")[0] for variant in master.playlists]
    dash_codecs = [rep.codecs for rep in mpd.periods[0].adaptation_sets[0].representations]
    assert hls_codecs == dash_codecs
    assert hls_codecs[1].startswith("hvc1.1.6.L")  # not the muxer's bare "hvc1"
    for variant in master.playlists:
        assert variant.stream_info.bandwidth >= variant.stream_info.average_bandwidth > 0
        assert variant.stream_info.audio is not None


def test_cmaf_variants_share_segment_boundaries(cmaf: Ladder) -> None:
    master = m3u8.load(str(cmaf.out_dir / "master.m3u8"))

    durations = [segment_durations(cmaf.out_dir / variant.uri) for variant in master.playlists]

    assert durations[0] == durations[1] == durations[2]
    assert_segments_of_target_length(durations[0])


def test_cmaf_media_playlists_are_plain_vod(cmaf: Ladder) -> None:
    for playlist_path in cmaf.out_dir.glob("media_*.m3u8"):
        text = playlist_path.read_text()
        assert "#EXT-X-PLAYLIST-TYPE:VOD" in text
        assert "PROGRAM-DATE-TIME" not in text


def test_every_ladder_file_can_be_described(cmaf: Ladder, hls_ts: Ladder) -> None:
    # The loop describes every file; fragments without their init segment must not fail it.
    described = {file.path: file for file in cmaf.described + hls_ts.described}

    assert described["seg-0-00001.m4s"].mime_type == "video/iso.segment"
    assert described["init-0.mp4"].width == 640
    # TS segments are described by size and MIME type only (probing each would be slow).
    assert described["v0/seg_00000.ts"].mime_type == "video/mp2t"
    assert described["v0/seg_00000.ts"].size_bytes > 0
    assert described["v0/seg_00000.ts"].codec == ""
    assert described["master.m3u8"].size_bytes > 0


def test_dash_bandwidth_is_the_measured_peak_segment_rate(dash: Ladder) -> None:
    manifest = dash.out_dir / "manifest.mpd"
    mpd = MPEGDASHParser.parse(str(manifest))
    files = dash_files(manifest)
    for adaptation_set in mpd.periods[0].adaptation_sets:
        for representation in adaptation_set.representations:
            durations = timeline_durations(representation)
            segments = files[representation.id][1:]  # the init segment is not media
            assert len(segments) == len(durations)
            peak = max(
                path.stat().st_size * 8 / seconds
                for path, seconds in zip(segments, durations, strict=True)
            )
            assert representation.bandwidth == round(peak), representation.id
