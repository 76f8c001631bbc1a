"""Stream copy for the recipes that keep what the input already has: web_ready, extract_audio.

Owns build_stream_copy_command, which returns a remux plan when the probed input allows one and
None when the output must be encoded (the usual builders then make it from the expanded spec),
and the two decisions behind it (web_ready_copies_video, extract_audio_copies), pure functions
of the spec and the probe so the choice can be tested without FFmpeg. Recipes are expanded by
the server; the recipe name on the spec is all this module reads of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from kiln.v1 import job_pb2

from common.loudness import wants_loudness
from worker.media.codec_args import audio_args
from worker.media.containers import AUDIO_CONTAINERS, PROGRESSIVE_CONTAINERS
from worker.media.geometry import default_stream
from worker.media.plan import COMMON_FLAGS, CommandPlan
from worker.media.timing import clip_window, input_args, seconds_arg

OutputType = job_pb2.OutputType

# ffprobe format names (InputInfo.container lists them comma-separated) whose H.264 an MP4
# takes as it is: ISO-BMFF (MP4/MOV/M4V/3GP) and Matroska.
WEB_READY_SOURCE_FORMATS = frozenset({"mov", "mp4", "matroska"})
# 8-bit 4:2:0 is the H.264 every browser decodes (4:2:2, 4:4:4 and 10-bit are not).
WEB_READY_PIXEL_FORMATS = frozenset({"yuv420p", "yuvj420p"})
# The source audio codec (as ffprobe names it) an audio output takes without re-encoding.
AUDIO_COPY_CODECS: Mapping[int, str] = {
    OutputType.OUTPUT_TYPE_M4A: "aac",
    OutputType.OUTPUT_TYPE_MP3: "mp3",
    OutputType.OUTPUT_TYPE_OPUS: "opus",
    OutputType.OUTPUT_TYPE_WAV: "pcm_s16le",
}


def _audio_is_reshaped(audio: job_pb2.AudioSpec) -> bool:
    """A bitrate, channel count or sample rate asked for: the audio has to be encoded."""
    return bool(audio.bitrate_kbps or audio.channels or audio.sample_rate)


def web_ready_copies_video(info: job_pb2.InputInfo) -> bool:
    video = default_stream(info, "video")
    return (
        video is not None
        and video.codec == "h264"
        and video.pixel_format in WEB_READY_PIXEL_FORMATS
        and bool(WEB_READY_SOURCE_FORMATS & set(info.container.split(",")))
    )


def extract_audio_copies(spec: job_pb2.OutputSpec, info: job_pb2.InputInfo) -> bool:
    audio = default_stream(info, "audio")
    return (
        audio is not None
        and AUDIO_COPY_CODECS.get(spec.type) == audio.codec
        and not _audio_is_reshaped(spec.audio)
    )


def build_stream_copy_command(
    *,
    input_path: str,
    spec: job_pb2.OutputSpec,
    info: job_pb2.InputInfo,
    out_dir: Path,
    ffmpeg: str = "ffmpeg",
) -> CommandPlan | None:
    """A remux of what the input already has, or None when this output must be encoded."""
    if wants_loudness(spec):
        # Normalizing re-encodes the audio, with a measurement first: the full builders do it.
        return None
    if spec.recipe.name == "web_ready" and spec.type == OutputType.OUTPUT_TYPE_MP4:
        video = default_stream(info, "video")
        if video is not None and web_ready_copies_video(info):
            return _web_ready(input_path, spec, info, video, out_dir, ffmpeg)
    if spec.recipe.name == "extract_audio":
        audio = default_stream(info, "audio")
        if audio is not None and extract_audio_copies(spec, info):
            return _extract_audio(input_path, spec, info, audio, out_dir, ffmpeg)
    return None


def _web_ready(
    input_path: str,
    spec: job_pb2.OutputSpec,
    info: job_pb2.InputInfo,
    video: job_pb2.StreamInfo,
    out_dir: Path,
    ffmpeg: str,
) -> CommandPlan:
    container = PROGRESSIVE_CONTAINERS[OutputType.OUTPUT_TYPE_MP4]
    notes = ["web_ready: the input's H.264 video is kept as it is (stream copy)"]
    output = out_dir / container.file_name
    argv = [ffmpeg, *COMMON_FLAGS, "-i", input_path, "-map", f"0:{video.index}", "-c:v", "copy"]
    audio = None if spec.audio.disabled else default_stream(info, "audio")
    if audio is not None:
        argv += ["-map", f"0:{audio.index}"]
        if audio.codec == "aac" and not _audio_is_reshaped(spec.audio):
            argv += ["-c:a", "copy"]
            notes.append("web_ready: the input's AAC audio is kept as it is (stream copy)")
        else:
            argv += audio_args(spec.audio, audio, container, notes)
    else:
        argv += ["-an"]
    # +faststart (the container's muxer args): the index goes in front, so playback starts
    # before the whole file has arrived.
    argv += [*container.muxer_args, "-f", container.muxer, str(output)]
    return CommandPlan(
        argv=argv, outputs=[output], notes=notes, expected_duration=info.duration_seconds
    )


def _extract_audio(
    input_path: str,
    spec: job_pb2.OutputSpec,
    info: job_pb2.InputInfo,
    audio: job_pb2.StreamInfo,
    out_dir: Path,
    ffmpeg: str,
) -> CommandPlan:
    container = AUDIO_CONTAINERS[spec.type]
    start, duration = clip_window(spec.clip, info.duration_seconds)
    output = out_dir / container.file_name
    argv = [ffmpeg, *COMMON_FLAGS, *input_args(input_path, start), "-map", f"0:{audio.index}"]
    if spec.clip.duration_seconds > 0:
        argv += ["-t", seconds_arg(duration)]
    argv += ["-c:a", "copy", *container.muxer_args, "-f", container.muxer, str(output)]
    notes = [f"extract_audio: the input's {audio.codec} audio is kept as it is (stream copy)"]
    return CommandPlan(argv=argv, outputs=[output], notes=notes, expected_duration=duration)
