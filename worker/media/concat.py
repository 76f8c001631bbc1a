"""Several inputs joined into one progressive or audio output, as a pure argv builder.

The concat filter needs every segment to have the same streams with the same parameters, so
each input is normalised first: video to the output size (letterboxed when its aspect differs),
square pixels, one frame rate and pixel format; audio to one sample rate and layout. An input
without audio gets silence of its length, so that the audio stays in step with the video.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

from kiln.v1 import job_pb2

from worker.media.codec_args import audio_args, video_encoder_args
from worker.media.containers import AUDIO_CONTAINERS, PROGRESSIVE_CONTAINERS
from worker.media.encoders import DEFAULT_SAMPLE_RATE, MAX_AUDIO_CHANNELS
from worker.media.errors import INPUT_NO_AUDIO, INPUT_NO_VIDEO, MediaError, OutputSpecError
from worker.media.geometry import default_stream, output_dimensions
from worker.media.plan import COMMON_FLAGS, CommandPlan
from worker.media.progressive import progressive_variant
from worker.media.timing import clip_window, seconds_arg

VideoCodec = job_pb2.VideoCodec
OutputType = job_pb2.OutputType

Inputs = Sequence[tuple[str, job_pb2.InputInfo]]


def build_concat_command(
    *,
    inputs: Inputs,
    spec: job_pb2.OutputSpec,
    out_dir: Path,
    ffmpeg: str = "ffmpeg",
) -> CommandPlan:
    """The inputs one after the other in an MP4/MOV/MKV/WEBM or MP3/M4A/OPUS/WAV output.

    The first input sets the picture size (through the variant's resolution) and frame rate.
    A clip applies to the joined result.
    """
    if len(inputs) < 2:
        raise OutputSpecError("concatenation needs at least two inputs")
    if spec.audio.HasField("loudness") or spec.audio.channels > MAX_AUDIO_CHANNELS:
        raise OutputSpecError("joined inputs take neither loudness nor more than two channels")
    if spec.type in PROGRESSIVE_CONTAINERS:
        return _build_video_concat(inputs, spec, out_dir, ffmpeg)
    if spec.type in AUDIO_CONTAINERS:
        return _build_audio_concat(inputs, spec, out_dir, ffmpeg)
    raise OutputSpecError(f"{OutputType.Name(spec.type)} cannot be made of several inputs")


def _build_video_concat(
    inputs: Inputs, spec: job_pb2.OutputSpec, out_dir: Path, ffmpeg: str
) -> CommandPlan:
    container = PROGRESSIVE_CONTAINERS[spec.type]
    variant, codec = progressive_variant(spec, container)
    videos = []
    for number, (_, info) in enumerate(inputs):
        video = default_stream(info, "video")
        if video is None:
            raise MediaError(INPUT_NO_VIDEO, f"input {number + 1} has no video stream")
        videos.append(video)

    notes: list[str] = []
    width, height = output_dimensions(variant, videos[0], index=0, notes=notes)
    frame_rate = _rate_arg(variant.fps or videos[0].frame_rate)
    audios = [default_stream(info, "audio") for _, info in inputs]
    with_audio = not spec.audio.disabled and any(audio is not None for audio in audios)
    audio_source = next((audio for audio in audios if audio is not None), None)
    channels = _channels(spec.audio, audio_source)
    sample_rate = spec.audio.sample_rate or DEFAULT_SAMPLE_RATE

    branches, labels = [], []
    for number, (video, audio, (_, info)) in enumerate(zip(videos, audios, inputs, strict=True)):
        branches.append(
            f"[{number}:{video.index}]"
            f"scale={width}:{height}:force_original_aspect_ratio=decrease,"
            f"pad={width}:{height}:(ow-iw)/2:(oh-ih)/2,setsar=1,fps={frame_rate},"
            f"format=yuv420p[v{number}]"
        )
        labels.append(f"[v{number}]")
        if with_audio:
            branches.append(
                _audio_branch(number, audio, info.duration_seconds, sample_rate, channels)
            )
            labels.append(f"[a{number}]")
    outlets = "[video][audio]" if with_audio else "[video]"
    branches.append(f"{''.join(labels)}concat=n={len(inputs)}:v=1:a={int(with_audio)}{outlets}")

    start, duration = _joined_window(spec.clip, inputs)
    output = out_dir / container.file_name
    argv = [ffmpeg, *COMMON_FLAGS, *_inputs_args(inputs)]
    argv += ["-filter_complex", ";".join(branches), "-map", "[video]"]
    if with_audio:
        argv += ["-map", "[audio]"]
    argv += _trim_args(spec.clip, start, duration)
    argv += [*video_encoder_args(codec, variant, width, height, container), "-pix_fmt", "yuv420p"]
    if with_audio and audio_source is not None:
        argv += audio_args(spec.audio, audio_source, container, notes, from_filter_graph=True)
    else:
        argv += ["-an"]
    argv += [*container.muxer_args, "-f", container.muxer, str(output)]
    return CommandPlan(argv=argv, outputs=[output], notes=notes, expected_duration=duration)


def _build_audio_concat(
    inputs: Inputs, spec: job_pb2.OutputSpec, out_dir: Path, ffmpeg: str
) -> CommandPlan:
    container = AUDIO_CONTAINERS[spec.type]
    if spec.audio.disabled:
        raise OutputSpecError("an audio output cannot have its audio disabled")
    audios = [default_stream(info, "audio") for _, info in inputs]
    audio_source = next((audio for audio in audios if audio is not None), None)
    if audio_source is None:
        raise MediaError(INPUT_NO_AUDIO, "none of the inputs has an audio stream")
    channels = _channels(spec.audio, audio_source)
    sample_rate = spec.audio.sample_rate or DEFAULT_SAMPLE_RATE

    notes: list[str] = []
    branches = [
        _audio_branch(number, audio, info.duration_seconds, sample_rate, channels)
        for number, (audio, (_, info)) in enumerate(zip(audios, inputs, strict=True))
    ]
    labels = "".join(f"[a{number}]" for number in range(len(inputs)))
    branches.append(f"{labels}concat=n={len(inputs)}:v=0:a=1[audio]")

    start, duration = _joined_window(spec.clip, inputs)
    output = out_dir / container.file_name
    argv = [ffmpeg, *COMMON_FLAGS, *_inputs_args(inputs)]
    argv += ["-filter_complex", ";".join(branches), "-map", "[audio]"]
    argv += _trim_args(spec.clip, start, duration)
    argv += audio_args(spec.audio, audio_source, container, notes, from_filter_graph=True)
    argv += [*container.muxer_args, "-f", container.muxer, str(output)]
    return CommandPlan(argv=argv, outputs=[output], notes=notes, expected_duration=duration)


def _audio_branch(
    number: int,
    audio: job_pb2.StreamInfo | None,
    duration: float,
    sample_rate: int,
    channels: int,
) -> str:
    layout = "mono" if channels == 1 else "stereo"
    if audio is None:
        # Silence as long as the input, so the next input's sound starts with its picture.
        source = f"anullsrc=r={sample_rate}:cl={layout},atrim=duration={seconds_arg(duration)}"
    else:
        source = f"[{number}:{audio.index}]aresample={sample_rate}"
    audio_format = f"aformat=sample_fmts=fltp:sample_rates={sample_rate}:channel_layouts={layout}"
    return f"{source},{audio_format}[a{number}]"


def _channels(audio: job_pb2.AudioSpec, source: job_pb2.StreamInfo | None) -> int:
    source_channels = source.channels if source is not None else 0
    return min(audio.channels or source_channels or MAX_AUDIO_CHANNELS, MAX_AUDIO_CHANNELS)


def _rate_arg(frame_rate: float) -> str:
    # As a fraction, so 29.97 fps sources keep 30000/1001 exactly.
    if frame_rate <= 0:
        raise MediaError(INPUT_NO_VIDEO, "the first input's video has no frame rate")
    rate = Fraction(frame_rate).limit_denominator(1001)
    return f"{rate.numerator}/{rate.denominator}"


def _inputs_args(inputs: Inputs) -> list[str]:
    args: list[str] = []
    for path, _ in inputs:
        args += ["-i", path]
    return args


def _joined_window(clip: job_pb2.ClipSpec, inputs: Inputs) -> tuple[float, float]:
    total = sum(info.duration_seconds for _, info in inputs)
    return clip_window(clip, total, "joined inputs")


def _trim_args(clip: job_pb2.ClipSpec, start: float, duration: float) -> list[str]:
    # Output options, so they cut the joined result (an input -ss would only cut the first
    # input). Decoding up to `start` is the price.
    args = ["-ss", seconds_arg(start)] if start > 0 else []
    if clip.duration_seconds > 0:
        args += ["-t", seconds_arg(duration)]
    return args
