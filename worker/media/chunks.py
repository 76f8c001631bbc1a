"""Chunked outputs: the argv of one chunk (a time range of the video, every variant) and of the
output's audio (encoded once, whole), as pure builders.

A chunk seeks its own range of the source (-ss before -i: keyframe seek, then exact decode, so
the frames kept are exactly those with start <= t < end), encodes it with the very encoder
settings of a single-pass encode, and writes timestamps continuous with its neighbours:
-output_ts_offset moves them to where they belong in the output, plus a lead (the same for
every chunk and the audio) that keeps every timestamp positive, since a muxer shifts a
stream with negative timestamps (B-frame delay, AAC priming) by an amount that depends on
where it starts, which would differ between the first chunk and the others.

Adaptive outputs (HLS, DASH, CMAF) start every chunk on a segment boundary, force keyframes on
the same grid as a single pass, and number segments across the whole output, so the chunks'
segments are the output's segments. Progressive outputs write one MP4 per chunk, joined later
by worker.media.merge.

fMP4 outputs (fMP4 HLS, DASH, CMAF) are cut by the hls muxer into one init segment and fMP4
segments per rendition whatever the type (the merge writes the HLS playlists and/or the MPD
over them). Their chunks need no lead: with the mp4 muxer's frag_discont flag the first
fragment's decode time (tfdt) is the first packet's, so -output_ts_offset puts a chunk's
segments exactly where a single pass puts them (the first chunk's first picture at 0), while
the init segment stays byte-identical to a single pass's (without the flag the muxer writes
tfdt 0 and an empty edit of the offset into the init instead: measured with FFmpeg 5.1).
Negative composition offsets show each fragment's first picture at its decode time, as in
the single-pass ladder (worker.media.ladder.hls_muxer_args).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from kiln.v1 import job_pb2

from common.output_types import ADAPTIVE, has_fmp4_segments
from worker.media.codec_args import audio_args, video_encoder_args
from worker.media.containers import PROGRESSIVE_CONTAINERS
from worker.media.errors import INPUT_NO_AUDIO, INPUT_NO_VIDEO, MediaError, OutputSpecError
from worker.media.geometry import default_stream, output_dimensions
from worker.media.ladder import (
    AUDIO_RENDITION_NAME,
    DEFAULT_SEGMENT_SECONDS,
    NEGATIVE_CTS_MOVFLAGS,
    display_aspect,
    ladder_container,
    ladder_filter_graph,
    rung_encoder_args,
)
from worker.media.ladder_rungs import plan_rungs
from worker.media.loudness import SecondPass
from worker.media.overlays import OverlayDrawing, one_variant_video
from worker.media.plan import COMMON_FLAGS, CommandPlan
from worker.media.progressive import progressive_variant
from worker.media.timing import clip_window, input_args, seconds_arg

OutputType = job_pb2.OutputType

# Intermediate files of a progressive output, removed when the merge stores the result.
CHUNK_FOLDER = "chunks"
AUDIO_FILE = f"{CHUNK_FOLDER}/audio.m4a"
# ffmpeg's own playlist of a chunk's segments: read for EXTINF durations, then deleted.
CHUNK_PLAYLIST = "chunk.m3u8"


def chunk_file(index: int) -> str:
    return f"{CHUNK_FOLDER}/chunk_{index:05d}.mp4"


@dataclass(frozen=True)
class ChunkWindow:
    """A chunk's range in seconds of the output, and where its timestamps go."""

    index: int
    count: int
    start: float
    end: float
    first_segment: int
    timestamp_offset: float


@dataclass
class ChunkCommand:
    plan: CommandPlan
    # Adaptive: rendition folder -> ffmpeg's playlist of this run's segments in it.
    playlists: dict[str, Path] = field(default_factory=dict)
    # Progressive: the one file this run writes.
    file: Path | None = None


def is_adaptive(spec: job_pb2.OutputSpec) -> bool:
    return spec.type in ADAPTIVE


def build_video_chunk_command(
    *,
    input_path: str,
    spec: job_pb2.OutputSpec,
    info: job_pb2.InputInfo,
    out_dir: Path,
    window: ChunkWindow,
    ffmpeg: str = "ffmpeg",
    overlays: OverlayDrawing | None = None,
) -> ChunkCommand:
    """Every video variant of the output over `window`, without audio. Overlays' time
    windows are in output time: this chunk's timestamps start at 0 at window.start."""
    video = default_stream(info, "video")
    if video is None:
        raise MediaError(INPUT_NO_VIDEO, "the input has no video stream")
    clip_start, clip_length = clip_window(spec.clip, info.duration_seconds)
    notes: list[str] = []
    argv = [ffmpeg, *COMMON_FLAGS, *input_args(input_path, clip_start + window.start)]
    if overlays is not None:
        overlays = dataclasses.replace(overlays, time_offset=window.start)
        argv += overlays.input_args()
    last = window.index == window.count - 1
    if not last or spec.clip.duration_seconds > 0:
        # The last chunk of a whole input runs to the end of the stream, as a single pass
        # does, rather than trusting the container's duration to the frame.
        argv += ["-t", seconds_arg(min(window.end, clip_length) - window.start)]
    length = min(window.end, clip_length) - window.start

    if is_adaptive(spec):
        container = ladder_container(spec)
        segment_seconds = spec.segments.duration_seconds or DEFAULT_SEGMENT_SECONDS
        rungs = plan_rungs(spec, video, container, segment_seconds, notes)
        graph = ladder_filter_graph(video.index, rungs, display_aspect(video), overlays)
        argv += ["-filter_complex", graph]
        for position in range(len(rungs)):
            argv += ["-map", f"[v{position}]"]
        for position, rung in enumerate(rungs):
            # No B-frames in MPEG-TS, as in one pass (ladder.py): hls.js starts a TS timeline
            # at the video's first decode time, which B-frames put before its first picture.
            argv += rung_encoder_args(rung, position, container, b_frames=container.is_iso_bmff)
        names = [f"v{position}" for position in range(len(rungs))]
        argv += [
            "-pix_fmt",
            "yuv420p",
            # The chunk starts on a boundary, so the grid relative to it is the output's grid.
            "-force_key_frames:v",
            f"expr:gte(t,n_forced*{seconds_arg(segment_seconds)})",
            "-an",
            *_hls_args(spec, out_dir, segment_seconds, window.first_segment),
            "-output_ts_offset",
            seconds_arg(window.timestamp_offset + window.start),
            "-var_stream_map",
            " ".join(f"v:{position},name:{name}" for position, name in enumerate(names)),
            str(out_dir / "%v" / CHUNK_PLAYLIST),
        ]
        plan = CommandPlan(argv=argv, outputs=[], notes=notes, expected_duration=length)
        return ChunkCommand(
            plan, playlists={name: out_dir / name / CHUNK_PLAYLIST for name in names}
        )

    container = PROGRESSIVE_CONTAINERS[spec.type]
    variant, codec = progressive_variant(spec, container)
    width, height = output_dimensions(variant, video, index=0, notes=notes)
    output = out_dir / chunk_file(window.index)
    output.parent.mkdir(parents=True, exist_ok=True)
    scaling = f"scale={width}:{height},setsar=1"
    _, video_map, video_filter = one_variant_video(overlays, video.index, scaling, width, height)
    argv += [
        "-map",
        video_map,
        *video_filter,
        *video_encoder_args(codec, variant, width, height, container),
        "-pix_fmt",
        "yuv420p",
        # Frames keep their own timestamps. The MP4 muxer's default (constant frame rate)
        # would fill the gap between a cut that falls between two frames (23.976 fps) and
        # the first frame after it with a duplicate.
        "-fps_mode:v",
        "passthrough",
        "-an",
        "-f",
        "mp4",
        str(output),
    ]
    plan = CommandPlan(argv=argv, outputs=[output], notes=notes, expected_duration=length)
    return ChunkCommand(plan, file=output)


def build_audio_command(
    *,
    input_path: str,
    spec: job_pb2.OutputSpec,
    info: job_pb2.InputInfo,
    out_dir: Path,
    timestamp_offset: float,
    ffmpeg: str = "ffmpeg",
    loudness: SecondPass | None = None,
) -> ChunkCommand:
    """The output's audio, whole: an HLS audio rendition, or an M4A the merge muxes in."""
    audio = default_stream(info, "audio")
    if audio is None:
        raise MediaError(INPUT_NO_AUDIO, "the input has no audio stream")
    clip_start, clip_length = clip_window(spec.clip, info.duration_seconds)
    notes: list[str] = []
    argv = [ffmpeg, *COMMON_FLAGS, *input_args(input_path, clip_start)]
    if spec.clip.duration_seconds > 0:
        argv += ["-t", seconds_arg(clip_length)]
    argv += ["-map", f"0:{audio.index}", "-vn"]
    if is_adaptive(spec):
        container = ladder_container(spec)
        segment_seconds = spec.segments.duration_seconds or DEFAULT_SEGMENT_SECONDS
        # Its first packet at the video's first picture, as in one pass: hls.js reports the
        # encoder's priming (21 ms of AAC before it) as audio overlapping the video's start.
        argv += audio_args(
            spec.audio, audio, container, notes, loudness=loudness, start_at_zero=True
        )
        argv += [
            *_hls_args(spec, out_dir, segment_seconds, 0, rendition=AUDIO_RENDITION_NAME),
            # EVENT overrides VOD: FFmpeg then rewrites the playlist after every segment (VOD:
            # only at the end), so the worker stores and reports them as they are made.
            "-hls_playlist_type",
            "event",
            "-output_ts_offset",
            seconds_arg(timestamp_offset),
            str(out_dir / AUDIO_RENDITION_NAME / CHUNK_PLAYLIST),
        ]
        (out_dir / AUDIO_RENDITION_NAME).mkdir(parents=True, exist_ok=True)
        plan = CommandPlan(argv=argv, outputs=[], notes=notes, expected_duration=clip_length)
        return ChunkCommand(
            plan, playlists={AUDIO_RENDITION_NAME: out_dir / AUDIO_RENDITION_NAME / CHUNK_PLAYLIST}
        )
    progressive = PROGRESSIVE_CONTAINERS.get(spec.type)
    if progressive is None:
        raise OutputSpecError(f"{OutputType.Name(spec.type)} is not chunked")
    output = out_dir / AUDIO_FILE
    output.parent.mkdir(parents=True, exist_ok=True)
    argv += audio_args(spec.audio, audio, progressive, notes, loudness=loudness)
    argv += ["-f", "mp4", str(output)]
    plan = CommandPlan(argv=argv, outputs=[output], notes=notes, expected_duration=clip_length)
    return ChunkCommand(plan, file=output)


def _hls_args(
    spec: job_pb2.OutputSpec,
    out_dir: Path,
    segment_seconds: float,
    first_segment: int,
    rendition: str = "%v",
) -> list[str]:
    fmp4 = has_fmp4_segments(spec)
    args = [
        "-f",
        "hls",
        "-hls_time",
        seconds_arg(segment_seconds),
        "-hls_playlist_type",
        "vod",
        "-hls_segment_type",
        "fmp4" if fmp4 else "mpegts",
        "-hls_flags",
        "independent_segments",
        "-start_number",
        str(first_segment),
        "-hls_segment_filename",
        str(out_dir / rendition / f"seg_%05d.{'m4s' if fmp4 else 'ts'}"),
    ]
    if fmp4:
        # +cmaf brands CMAF's fragments as the single-pass dash muxer does (cmfc).
        cmaf = "+cmaf" if spec.type == OutputType.OUTPUT_TYPE_CMAF else ""
        args += [
            # With var_stream_map the muxer appends the stream number: v0/init_0.mp4.
            "-hls_fmp4_init_filename",
            "init.mp4",
            "-hls_segment_options",
            f"movflags={cmaf}{NEGATIVE_CTS_MOVFLAGS}+frag_discont",
            "-avoid_negative_ts",
            "disabled",
        ]
    return args
