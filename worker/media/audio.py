"""Audio-only outputs: MP3, M4A, OPUS or WAV from the input's default audio stream.

Owns build_audio_command; the codec, channel and sample-rate choices are worker.media.codec_args
audio_args, the same as for the audio track of a video output.
"""

from __future__ import annotations

from pathlib import Path

from kiln.v1 import job_pb2

from worker.media.codec_args import audio_args
from worker.media.containers import AUDIO_CONTAINERS
from worker.media.errors import INPUT_NO_AUDIO, MediaError, OutputSpecError
from worker.media.geometry import default_stream
from worker.media.loudness import SecondPass
from worker.media.plan import COMMON_FLAGS, CommandPlan
from worker.media.timing import clip_window, input_args, seconds_arg

OutputType = job_pb2.OutputType


def build_audio_command(
    *,
    input_path: str,
    spec: job_pb2.OutputSpec,
    info: job_pb2.InputInfo,
    out_dir: Path,
    ffmpeg: str = "ffmpeg",
    loudness: SecondPass | None = None,
) -> CommandPlan:
    """Audio only: MP3, M4A, OPUS or WAV from the input's default audio stream."""
    container = AUDIO_CONTAINERS.get(spec.type)
    if container is None:
        raise OutputSpecError(f"{OutputType.Name(spec.type)} is not an audio type")
    if spec.audio.disabled:
        raise OutputSpecError("an audio output cannot have its audio disabled")
    audio = default_stream(info, "audio")
    if audio is None:
        raise MediaError(INPUT_NO_AUDIO, "the input has no audio stream")

    notes: list[str] = []
    start, duration = clip_window(spec.clip, info.duration_seconds)
    output = out_dir / container.file_name
    argv = [ffmpeg, *COMMON_FLAGS, *input_args(input_path, start), "-map", f"0:{audio.index}"]
    if spec.clip.duration_seconds > 0:
        argv += ["-t", seconds_arg(duration)]
    argv += audio_args(spec.audio, audio, container, notes, loudness=loudness)
    argv += [*container.muxer_args, "-f", container.muxer, str(output)]
    return CommandPlan(argv=argv, outputs=[output], notes=notes, expected_duration=duration)
