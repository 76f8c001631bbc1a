"""Progressive outputs: one video variant and at most one audio track in MP4, MOV, MKV or WEBM.

Owns build_progressive_command and progressive_variant (the single variant and the codec it
resolves to in a container, also used by worker.media.concat), plus the video filter chain of a
single-file encode.
"""

from __future__ import annotations

from pathlib import Path

from kiln.v1 import job_pb2

from worker.media.audio_tracks import PreparedAudio, encode_args, extra_inputs, track_maps
from worker.media.codec_args import audio_args, video_encoder_args
from worker.media.containers import PROGRESSIVE_CONTAINERS, Container
from worker.media.errors import INPUT_NO_VIDEO, MediaError, OutputSpecError
from worker.media.geometry import default_stream, output_dimensions
from worker.media.loudness import SecondPass
from worker.media.overlays import OverlayDrawing, one_variant_video
from worker.media.plan import COMMON_FLAGS, CommandPlan
from worker.media.text_tracks import (
    PreparedTrack,
    burned_in_filter,
    carried,
    progressive_text_args,
)
from worker.media.timing import clip_window, input_args, seconds_arg

VideoCodec = job_pb2.VideoCodec
OutputType = job_pb2.OutputType


def progressive_variant(
    spec: job_pb2.OutputSpec, container: Container
) -> tuple[job_pb2.VideoVariant, int]:
    """The single video variant of a progressive output and the codec it resolves to."""
    if len(spec.video) != 1:
        raise OutputSpecError(
            f"a progressive output takes exactly one video variant, got {len(spec.video)}"
        )
    variant = spec.video[0]
    codec = variant.codec or container.video_codecs[0]
    if codec not in container.video_codecs:
        raise OutputSpecError(
            f"{VideoCodec.Name(codec)} cannot go into {OutputType.Name(spec.type)}"
        )
    return variant, codec


def build_progressive_command(
    *,
    input_path: str,
    spec: job_pb2.OutputSpec,
    info: job_pb2.InputInfo,
    out_dir: Path,
    ffmpeg: str = "ffmpeg",
    loudness: SecondPass | None = None,
    overlays: OverlayDrawing | None = None,
    text_tracks: list[PreparedTrack] | None = None,
    audio_tracks: list[PreparedAudio] | None = None,
) -> CommandPlan:
    """One video variant, (optionally) one audio track and the text tracks (each a WebVTT file
    on the output's timeline, read as one more input) in MP4, MOV, MKV or WEBM. audio_tracks,
    when given, replace the one audio track: every one is carried, extra files read as inputs
    after the text tracks' files."""
    container = PROGRESSIVE_CONTAINERS.get(spec.type)
    if container is None:
        raise OutputSpecError(f"{OutputType.Name(spec.type)} is not a progressive type")
    variant, codec = progressive_variant(spec, container)
    video = default_stream(info, "video")
    if video is None:
        raise MediaError(INPUT_NO_VIDEO, "the input has no video stream")

    notes: list[str] = []
    start, duration = clip_window(spec.clip, info.duration_seconds)
    width, height = output_dimensions(variant, video, index=0, notes=notes)
    output = out_dir / container.file_name

    scaling = _video_filter(variant.fps, width, height, burned_in_filter(text_tracks or []))
    images, video_map, video_filter = one_variant_video(
        overlays, video.index, scaling, width, height
    )
    # The carried text tracks' WebVTT files are the inputs after the overlays' images.
    first_text_input = 1 + images.count("-i")
    text_inputs, text_outputs = progressive_text_args(
        carried(text_tracks or []), spec.type, first_text_input
    )
    argv = [ffmpeg, *COMMON_FLAGS, *input_args(input_path, start), *images, *text_inputs]
    first_audio_input = argv.count("-i")
    argv += extra_inputs(audio_tracks or [], start)
    argv += ["-map", video_map]
    audio = None if spec.audio.disabled else default_stream(info, "audio")
    if audio_tracks:
        audio = None  # the tracks below stand in for the default stream
        argv += track_maps(audio_tracks, first_audio_input)
    if audio is not None:
        argv += ["-map", f"0:{audio.index}"]
    argv += text_outputs
    if spec.clip.duration_seconds > 0:
        argv += ["-t", seconds_arg(duration)]
    argv += [
        *video_filter,
        *video_encoder_args(codec, variant, width, height, container),
        "-pix_fmt",
        "yuv420p",
    ]
    if audio_tracks:
        argv += encode_args(audio_tracks, container, spec.type, notes)
    elif audio is not None:
        argv += audio_args(spec.audio, audio, container, notes, loudness=loudness)
    else:
        argv += ["-an"]
    argv += [*container.muxer_args, "-f", container.muxer, str(output)]
    return CommandPlan(argv=argv, outputs=[output], notes=notes, expected_duration=duration)


def _video_filter(fps: float, width: int, height: int, burn_in: str | None = None) -> str:
    # fps first so frames that will be dropped are never scaled; setsar=1 makes anamorphic
    # sources square-pixel, which is what the computed display size assumes. Burned-in text
    # last, drawn at the output's own size.
    steps = [f"fps={fps:g}"] if fps > 0 else []
    steps += [f"scale={width}:{height}", "setsar=1"]
    steps += [burn_in] if burn_in else []
    return ",".join(steps)
