"""ffmpeg argument lists for one output, as pure functions of (spec, probed input, paths).

Nothing here runs a process or touches the file system, so every decision (sizes, rate control,
stream choice) can be tested by looking at the argv. The tables at the top are the policy; the
builders below only combine them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kiln.v1 import job_pb2

from worker.media.errors import (
    INPUT_NO_AUDIO,
    INPUT_NO_VIDEO,
    INPUT_ZERO_DURATION,
    OUTPUT_SPEC_UNSUPPORTED,
    MediaError,
)

VideoCodec = job_pb2.VideoCodec
AudioCodec = job_pb2.AudioCodec
OutputType = job_pb2.OutputType
Quality = job_pb2.Quality

COMMON_FLAGS: tuple[str, ...] = (
    "-hide_banner",
    "-nostdin",
    "-y",
    "-progress",
    "pipe:1",
    "-nostats",
    "-loglevel",
    "error",
)


class OutputSpecError(MediaError):
    """The spec asks for a combination this builder cannot make (e.g. H.264 in WEBM).

    The server validates specs before accepting a job, so reaching this is a gap in that
    validation rather than a property of the input; it is never retryable.
    """

    def __init__(self, message: str) -> None:
        super().__init__(OUTPUT_SPEC_UNSUPPORTED, message)


@dataclass(frozen=True)
class LadderPackaging:
    """Where a ladder's manifests are, for worker.media.packaging.finalize_output.

    ffmpeg writes the HLS master playlist before any segment exists, so its BANDWIDTH and CODECS
    are estimates (and CODECS is wrong or missing for HEVC); finalize rewrites them from the
    produced segments.
    """

    # master.m3u8 of an HLS or CMAF output.
    hls_master: Path | None = None
    # manifest.mpd of a DASH or CMAF output.
    dash_manifest: Path | None = None


@dataclass(frozen=True)
class SpriteSheet:
    """A sprite's geometry, from which finalize writes the WebVTT map next to the image."""

    image: Path
    vtt: Path
    tile_width: int
    tile_height: int
    columns: int
    tile_count: int
    interval_seconds: float
    # Length of the covered clip: the last cue ends here rather than a whole interval later.
    duration_seconds: float


# What has to happen after ffmpeg exits for the output to be complete.
FinalizeStep = LadderPackaging | SpriteSheet


@dataclass
class CommandPlan:
    argv: list[str]
    # Every file the command writes, so a failed or canceled run can clean up after itself.
    # Ladders write segments whose number is only known afterwards: they list their manifests,
    # and the segments are under the same out_dir.
    outputs: list[Path]
    # Adjustments made to the spec, shown to the user as Output.notes.
    notes: list[str] = field(default_factory=list)
    # Seconds of media the command produces; the denominator of progress.
    expected_duration: float = 0.0
    # Work for worker.media.packaging.finalize_output once ffmpeg succeeded; None when the files
    # ffmpeg wrote are already the output.
    finalize: FinalizeStep | None = None
    # Working directory of the run (custom commands run in their scratch output folder).
    cwd: Path | None = None
    # Whether the run gets the worker's CPU-time limit (custom commands do).
    cpu_limited: bool = False


# --- Video quality -------------------------------------------------------------------------------

# Peak bitrate (kbit/s) of an H.264 STANDARD encode by resolution class (the shorter side, so a
# portrait 1080x1920 video is in the 1080 class). Each quality row scales it, so the caps of all
# codecs and tiers stay in proportion; bufsize is twice the peak (about two seconds of VBV).
REFERENCE_MAXRATE_KBPS: Mapping[int, int] = {
    240: 600,
    360: 1_000,
    480: 2_000,
    720: 4_000,
    1080: 7_000,
    1440: 14_000,
    2160: 25_000,
}


@dataclass(frozen=True)
class QualityRow:
    # Encoder speed settings (preset, cpu-used, ...), passed as they are.
    speed_args: tuple[str, ...]
    crf: int
    # Multiplier on REFERENCE_MAXRATE_KBPS for the peak bitrate.
    maxrate_scale: float

    def maxrate_kbps(self, width: int, height: int) -> int:
        resolution_class = min(width, height)
        reference = next(
            (
                kbps
                for rung, kbps in sorted(REFERENCE_MAXRATE_KBPS.items())
                if rung >= resolution_class
            ),
            max(REFERENCE_MAXRATE_KBPS.values()),
        )
        return round(reference * self.maxrate_scale)


_VP9_SPEED = ("-deadline", "good", "-row-mt", "1")

# One table for every video codec and tier. CRF scales differ per encoder (x264/x265 0-51,
# VP9/AV1 0-63), so the numbers are only comparable within a codec. Newer codecs get lower caps
# for the same picture because they compress better.
VIDEO_QUALITY: Mapping[int, Mapping[int, QualityRow]] = {
    VideoCodec.VIDEO_CODEC_H264: {
        Quality.QUALITY_ECONOMY: QualityRow(("-preset", "veryfast"), crf=28, maxrate_scale=0.6),
        Quality.QUALITY_STANDARD: QualityRow(("-preset", "veryfast"), crf=23, maxrate_scale=1.0),
        Quality.QUALITY_PREMIUM: QualityRow(("-preset", "medium"), crf=20, maxrate_scale=1.5),
    },
    VideoCodec.VIDEO_CODEC_H265: {
        Quality.QUALITY_ECONOMY: QualityRow(("-preset", "veryfast"), crf=30, maxrate_scale=0.4),
        Quality.QUALITY_STANDARD: QualityRow(("-preset", "veryfast"), crf=26, maxrate_scale=0.65),
        Quality.QUALITY_PREMIUM: QualityRow(("-preset", "medium"), crf=23, maxrate_scale=1.0),
    },
    VideoCodec.VIDEO_CODEC_VP9: {
        Quality.QUALITY_ECONOMY: QualityRow(
            (*_VP9_SPEED, "-cpu-used", "5"), crf=38, maxrate_scale=0.45
        ),
        Quality.QUALITY_STANDARD: QualityRow(
            (*_VP9_SPEED, "-cpu-used", "4"), crf=33, maxrate_scale=0.7
        ),
        Quality.QUALITY_PREMIUM: QualityRow(
            (*_VP9_SPEED, "-cpu-used", "2"), crf=28, maxrate_scale=1.05
        ),
    },
    VideoCodec.VIDEO_CODEC_AV1: {
        Quality.QUALITY_ECONOMY: QualityRow(("-preset", "10"), crf=40, maxrate_scale=0.35),
        Quality.QUALITY_STANDARD: QualityRow(("-preset", "8"), crf=35, maxrate_scale=0.55),
        Quality.QUALITY_PREMIUM: QualityRow(("-preset", "6"), crf=30, maxrate_scale=0.85),
    },
}


@dataclass(frozen=True)
class VideoEncoder:
    name: str
    # Arguments every encode with this encoder gets, independent of quality.
    fixed_args: tuple[str, ...] = ()
    # Extra arguments only in MP4/MOV (QuickTime players want HEVC tagged hvc1, not hev1).
    iso_bmff_args: tuple[str, ...] = ()
    # VP9 caps a CRF encode through -b:v (constrained quality); the others take -maxrate.
    caps_crf_with_target_bitrate: bool = False
    # SVT-AV1 refuses a peak equal to the target bitrate, so a fixed bitrate is plain -b:v (VBR).
    takes_peak_with_target_bitrate: bool = True
    # What a ladder adds so that keyframes fall only where it puts them (segment boundaries):
    # the option for the minimum keyframe distance (set equal to -g), flags that stop the
    # encoder from adding keyframes of its own (scene cuts) or making non-IDR ones, and entries
    # for its own parameter option (merged into fixed_args, as a second -x265-params would
    # replace the first).
    min_keyint_flag: str = ""
    aligned_keyframe_args: tuple[str, ...] = ()
    params_flag: str = ""
    aligned_keyframe_params: tuple[str, ...] = ()
    # SVT-AV1 in FFmpeg 5.1 ignores -force_key_frames, so only an exact GOP keeps it aligned.
    honours_forced_keyframes: bool = True


VIDEO_ENCODERS: Mapping[int, VideoEncoder] = {
    VideoCodec.VIDEO_CODEC_H264: VideoEncoder(
        "libx264",
        fixed_args=("-profile:v", "high"),
        min_keyint_flag="-keyint_min",
        aligned_keyframe_args=("-sc_threshold", "0", "-forced-idr", "1"),
    ),
    VideoCodec.VIDEO_CODEC_H265: VideoEncoder(
        "libx265",
        # x265 logs every encode's settings to stderr otherwise, burying real errors.
        fixed_args=("-x265-params", "log-level=error"),
        iso_bmff_args=("-tag:v", "hvc1"),
        min_keyint_flag="-keyint_min",
        # libx265 ignores -sc_threshold (x265 still logs "scenecut 40" with it); scene cuts and
        # open GOPs (on by default: CRA keyframes whose leading pictures need the previous
        # segment) are switched off through x265's own parameters instead.
        aligned_keyframe_args=("-forced-idr", "1"),
        params_flag="-x265-params",
        aligned_keyframe_params=("scenecut=0", "open-gop=0"),
    ),
    VideoCodec.VIDEO_CODEC_VP9: VideoEncoder(
        "libvpx-vp9", caps_crf_with_target_bitrate=True, min_keyint_flag="-keyint_min"
    ),
    # SVT-AV1 detects no scene cuts unless asked to and has no minimum keyframe distance.
    VideoCodec.VIDEO_CODEC_AV1: VideoEncoder(
        "libsvtav1", takes_peak_with_target_bitrate=False, honours_forced_keyframes=False
    ),
}


# --- Audio ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AudioEncoder:
    name: str
    takes_bitrate: bool = True
    # Sample rates the encoder accepts; empty means any.
    sample_rates: tuple[int, ...] = ()


AUDIO_ENCODERS: Mapping[int, AudioEncoder] = {
    AudioCodec.AUDIO_CODEC_AAC: AudioEncoder("aac"),
    AudioCodec.AUDIO_CODEC_OPUS: AudioEncoder(
        "libopus", sample_rates=(48000, 24000, 16000, 12000, 8000)
    ),
    AudioCodec.AUDIO_CODEC_MP3: AudioEncoder(
        "libmp3lame", sample_rates=(48000, 44100, 32000, 24000, 22050, 16000)
    ),
    AudioCodec.AUDIO_CODEC_PCM: AudioEncoder("pcm_s16le", takes_bitrate=False),
}

DEFAULT_AUDIO_BITRATE_KBPS = 128
DEFAULT_SAMPLE_RATE = 48000
MAX_AUDIO_CHANNELS = 2


# --- Containers ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Container:
    muxer: str
    file_name: str
    # The first entry is the default when the spec leaves the codec unset.
    video_codecs: tuple[int, ...]
    audio_codecs: tuple[int, ...]
    muxer_args: tuple[str, ...] = ()
    is_iso_bmff: bool = False


_FASTSTART = ("-movflags", "+faststart")
_H264, _H265, _VP9, _AV1 = (
    VideoCodec.VIDEO_CODEC_H264,
    VideoCodec.VIDEO_CODEC_H265,
    VideoCodec.VIDEO_CODEC_VP9,
    VideoCodec.VIDEO_CODEC_AV1,
)
_AAC, _OPUS, _MP3, _PCM = (
    AudioCodec.AUDIO_CODEC_AAC,
    AudioCodec.AUDIO_CODEC_OPUS,
    AudioCodec.AUDIO_CODEC_MP3,
    AudioCodec.AUDIO_CODEC_PCM,
)

PROGRESSIVE_CONTAINERS: Mapping[int, Container] = {
    # +faststart moves the index to the front so browsers can start playing before the end.
    OutputType.OUTPUT_TYPE_MP4: Container(
        "mp4", "output.mp4", (_H264, _H265, _AV1), (_AAC, _OPUS), _FASTSTART, is_iso_bmff=True
    ),
    OutputType.OUTPUT_TYPE_MOV: Container(
        "mov", "output.mov", (_H264, _H265), (_AAC,), _FASTSTART, is_iso_bmff=True
    ),
    OutputType.OUTPUT_TYPE_MKV: Container(
        "matroska", "output.mkv", (_H264, _H265, _VP9, _AV1), (_AAC, _OPUS)
    ),
    OutputType.OUTPUT_TYPE_WEBM: Container("webm", "output.webm", (_VP9, _AV1), (_OPUS,)),
}

AUDIO_CONTAINERS: Mapping[int, Container] = {
    OutputType.OUTPUT_TYPE_MP3: Container("mp3", "output.mp3", (), (_MP3,)),
    # The ipod muxer writes what iTunes-era players expect of .m4a (plain mp4 works elsewhere).
    OutputType.OUTPUT_TYPE_M4A: Container(
        "ipod", "output.m4a", (), (_AAC,), _FASTSTART, is_iso_bmff=True
    ),
    OutputType.OUTPUT_TYPE_OPUS: Container("opus", "output.opus", (), (_OPUS,)),
    OutputType.OUTPUT_TYPE_WAV: Container("wav", "output.wav", (), (_PCM,)),
}


@dataclass(frozen=True)
class ImageFormat:
    file_name: str
    encoder_args: tuple[str, ...]


IMAGE_FORMATS: Mapping[int, ImageFormat] = {
    # mjpeg -q:v runs 2 (best) to 31; 2-3 is visually lossless for previews.
    OutputType.OUTPUT_TYPE_JPG: ImageFormat("output.jpg", ("-c:v", "mjpeg", "-q:v", "2")),
    OutputType.OUTPUT_TYPE_PNG: ImageFormat("output.png", ("-c:v", "png")),
    OutputType.OUTPUT_TYPE_WEBP: ImageFormat(
        "output.webp", ("-c:v", "libwebp", "-quality", "80", "-lossless", "0")
    ),
}


# --- Builders ------------------------------------------------------------------------------------


LADDER_TYPES = frozenset(
    {OutputType.OUTPUT_TYPE_HLS, OutputType.OUTPUT_TYPE_DASH, OutputType.OUTPUT_TYPE_CMAF}
)


def build_command(
    *,
    input_path: str,
    spec: job_pb2.OutputSpec,
    info: job_pb2.InputInfo,
    out_dir: Path,
    ffmpeg: str = "ffmpeg",
    extra_inputs: Sequence[tuple[str, job_pb2.InputInfo]] = (),
) -> CommandPlan:
    """Picks the builder for spec.type.

    extra_inputs are (path, probed info) of inputs concatenated after input_path, in order;
    only progressive and audio outputs can be made of several inputs.
    """
    # The builders in other modules import the tables and helpers of this one, so they are
    # imported here rather than at the top (which would be circular).
    from worker.media.concat import build_concat_command
    from worker.media.custom import build_custom_command
    from worker.media.images import build_gif_command
    from worker.media.ladder import build_ladder_command

    arguments = {
        "input_path": input_path,
        "spec": spec,
        "info": info,
        "out_dir": out_dir,
        "ffmpeg": ffmpeg,
    }
    if spec.HasField("custom"):
        return build_custom_command(**arguments, extra_inputs=extra_inputs)
    if extra_inputs:
        return build_concat_command(
            inputs=[(input_path, info), *extra_inputs], spec=spec, out_dir=out_dir, ffmpeg=ffmpeg
        )
    if spec.type in PROGRESSIVE_CONTAINERS:
        return build_progressive_command(**arguments)
    if spec.type in AUDIO_CONTAINERS:
        return build_audio_command(**arguments)
    if spec.type in IMAGE_FORMATS:
        return build_thumbnail_command(**arguments)
    if spec.type == OutputType.OUTPUT_TYPE_GIF:
        return build_gif_command(**arguments)
    if spec.type in LADDER_TYPES:
        return build_ladder_command(**arguments)
    raise OutputSpecError(f"output type {OutputType.Name(spec.type)} is not built by build_command")


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
) -> CommandPlan:
    """One video variant and (optionally) one audio track in MP4, MOV, MKV or WEBM."""
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

    argv = [ffmpeg, *COMMON_FLAGS, *input_args(input_path, start), "-map", f"0:{video.index}"]
    audio = None if spec.audio.disabled else default_stream(info, "audio")
    if audio is not None:
        argv += ["-map", f"0:{audio.index}"]
    if spec.clip.duration_seconds > 0:
        argv += ["-t", seconds_arg(duration)]
    argv += [
        "-vf",
        _video_filter(variant.fps, width, height),
        *video_encoder_args(codec, variant, width, height, container),
        "-pix_fmt",
        "yuv420p",
    ]
    argv += audio_args(spec.audio, audio, container, notes) if audio is not None else ["-an"]
    argv += [*container.muxer_args, "-f", container.muxer, str(output)]
    return CommandPlan(argv=argv, outputs=[output], notes=notes, expected_duration=duration)


def build_audio_command(
    *,
    input_path: str,
    spec: job_pb2.OutputSpec,
    info: job_pb2.InputInfo,
    out_dir: Path,
    ffmpeg: str = "ffmpeg",
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
    argv += audio_args(spec.audio, audio, container, notes)
    argv += [*container.muxer_args, "-f", container.muxer, str(output)]
    return CommandPlan(argv=argv, outputs=[output], notes=notes, expected_duration=duration)


def build_thumbnail_command(
    *,
    input_path: str,
    spec: job_pb2.OutputSpec,
    info: job_pb2.InputInfo,
    out_dir: Path,
    ffmpeg: str = "ffmpeg",
) -> CommandPlan:
    """Still images (JPG, PNG or WEBP) as spec.thumbnail.mode says.

    SINGLE (the default) is one image at spec.thumbnail.time_seconds into the clip; INTERVAL,
    TIMESTAMPS and SPRITE are built in worker.media.images.
    """
    image = IMAGE_FORMATS.get(spec.type)
    if image is None:
        raise OutputSpecError(f"{OutputType.Name(spec.type)} is not a still image type")
    mode = spec.thumbnail.mode or job_pb2.ThumbnailMode.THUMBNAIL_MODE_SINGLE
    if mode != job_pb2.ThumbnailMode.THUMBNAIL_MODE_SINGLE:
        from worker.media.images import build_image_series_command  # circular at the top

        return build_image_series_command(
            input_path=input_path, spec=spec, info=info, out_dir=out_dir, ffmpeg=ffmpeg
        )
    video = default_stream(info, "video")
    if video is None:
        raise MediaError(INPUT_NO_VIDEO, "the input has no video stream")

    notes: list[str] = []
    clip_start, clip_duration = clip_window(spec.clip, info.duration_seconds)
    frame_duration = frame_duration_of(video)
    latest = last_frame_seek(clip_duration, frame_duration)
    at = spec.thumbnail.time_seconds
    if at > latest:
        notes.append(f"thumbnail at {at:g} s moved to {latest:g} s, the last frame")
        at = latest

    width, height = scaled_to_width(video, spec.thumbnail.width)
    output = out_dir / image.file_name
    argv = [
        ffmpeg,
        *COMMON_FLAGS,
        *input_args(input_path, clip_start + at),
        *one_image_args(f"0:{video.index}", width, height, image, output),
    ]
    return CommandPlan(argv=argv, outputs=[output], notes=notes, expected_duration=frame_duration)


def one_image_args(
    stream: str, width: int, height: int, image: ImageFormat, output: Path
) -> list[str]:
    """Output options writing one frame of `stream` as one image file."""
    return [
        "-map",
        stream,
        "-frames:v",
        "1",
        "-vf",
        f"scale={width}:{height},setsar=1",
        *image.encoder_args,
        # -update writes one fixed file name instead of treating it as a numbered pattern.
        "-update",
        "1",
        "-f",
        "image2",
        str(output),
    ]


# --- Stream choice and geometry ------------------------------------------------------------------


def default_stream(info: job_pb2.InputInfo, kind: str) -> job_pb2.StreamInfo | None:
    """The stream a player would pick: the first of `kind` marked default, else the first."""
    candidates = [stream for stream in info.streams if stream.kind == kind]
    return next((stream for stream in candidates if stream.is_default), None) or next(
        iter(candidates), None
    )


def display_size(video: job_pb2.StreamInfo) -> tuple[int, int]:
    """Width and height as shown: ffmpeg rotates on decode, so a 90/270 rotation swaps them."""
    if video.rotation in (90, 270):
        return video.height, video.width
    return video.width, video.height


def frame_duration_of(video: job_pb2.StreamInfo) -> float:
    return 1 / video.frame_rate if video.frame_rate > 0 else 0.04


def last_frame_seek(clip_duration: float, frame_duration: float) -> float:
    """The latest -ss (seconds into the clip) that still yields a frame.

    Seeking to or past the last frame's timestamp yields nothing at all (and ffmpeg still exits
    0), so this aims half a frame before the last one, rounded down to the millisecond that
    seconds_arg writes.
    """
    return max(0.0, math.floor((clip_duration - 1.5 * frame_duration) * 1000) / 1000)


def scaled_to_width(video: job_pb2.StreamInfo, width: int) -> tuple[int, int]:
    """Even (width, height) of an image `width` wide (the source's when 0), aspect kept."""
    display_width, display_height = _checked_display_size(video)
    width = width or display_width
    return nearest_even(width), nearest_even(width * display_height / display_width)


_HEIGHT_RESOLUTION = re.compile(r"^(\d+)p$")
_EXPLICIT_RESOLUTION = re.compile(r"^(\d+)x(\d+)$")


def output_dimensions(
    variant: job_pb2.VideoVariant,
    video: job_pb2.StreamInfo,
    *,
    index: int,
    notes: list[str],
) -> tuple[int, int]:
    """Even width and height for a variant, keeping the source's displayed aspect ratio.

    "720p" fixes the height; "WxH" is a box the picture is fitted into (a different aspect would
    otherwise stretch it). Unless allow_upscale, nothing grows beyond the source; every change
    to what was asked is recorded in `notes` with the variant's index.
    """
    source_width, source_height = _checked_display_size(video)
    box = _requested_box(variant)
    if box is None:
        return even_floor(source_width), even_floor(source_height)
    box_width, box_height = box

    scale = min(box_width / source_width, box_height / source_height)
    if scale > 1 and not variant.allow_upscale:
        notes.append(
            f"variant {index}: {variant.resolution} capped to source {source_width}x{source_height}"
        )
        return even_floor(source_width), even_floor(source_height)

    width, height = nearest_even(source_width * scale), nearest_even(source_height * scale)
    if box_width != math.inf and (width, height) != (
        nearest_even(box_width),
        nearest_even(box_height),
    ):
        notes.append(
            f"variant {index}: {variant.resolution} fitted to {width}x{height} "
            "to keep the source aspect ratio"
        )
    return width, height


def exceeds_source(variant: job_pb2.VideoVariant, video: job_pb2.StreamInfo) -> bool:
    """Whether output_dimensions would cap this variant to the source size."""
    source_width, source_height = _checked_display_size(video)
    box = _requested_box(variant)
    if box is None or variant.allow_upscale:
        return False
    box_width, box_height = box
    return min(box_width / source_width, box_height / source_height) > 1


def _checked_display_size(video: job_pb2.StreamInfo) -> tuple[int, int]:
    source_width, source_height = display_size(video)
    if source_width <= 0 or source_height <= 0:
        raise MediaError(INPUT_NO_VIDEO, "the input's video stream has no dimensions")
    return source_width, source_height


def _requested_box(variant: job_pb2.VideoVariant) -> tuple[float, float] | None:
    """The (width, height) box a resolution string asks for; width is infinite for "NNNp"."""
    requested = variant.resolution.strip().lower()
    if not requested:
        return None
    if match := _HEIGHT_RESOLUTION.match(requested):
        box_width, box_height = math.inf, float(match.group(1))
    elif match := _EXPLICIT_RESOLUTION.match(requested):
        box_width, box_height = float(match.group(1)), float(match.group(2))
    else:
        raise OutputSpecError(f"resolution {variant.resolution!r} is not 'NNNp' or 'WxH'")
    if box_height <= 0 or box_width <= 0:
        raise OutputSpecError(f"resolution {variant.resolution!r} is empty")
    return box_width, box_height


def nearest_even(value: float) -> int:
    # The nearest even number (as 4:2:0 chroma needs), halves rounded up rather than to even so
    # that 405 → 406 like 403 → 404, and never below 2.
    return max(2, math.floor(value / 2 + 0.5) * 2)


def even_floor(value: int) -> int:
    # For the source size itself: rounding up would be an upscale by one pixel.
    return max(2, value - value % 2)


# --- Argument pieces -----------------------------------------------------------------------------


def input_args(input_path: str, start: float) -> list[str]:
    # -ss before -i seeks the demuxer (fast, keyframe then exact decode), and timestamps start at
    # zero, so -t and progress both count from the clip start.
    seek = ["-ss", seconds_arg(start)] if start > 0 else []
    return [*seek, "-i", input_path]


def clip_window(
    clip: job_pb2.ClipSpec, source_duration: float, what: str = "input"
) -> tuple[float, float]:
    """(start, length) of the part of the input (`what`, for the message) an output covers."""
    start = max(0.0, clip.start_seconds)
    remaining = source_duration - start
    if remaining <= 0:
        raise MediaError(
            INPUT_ZERO_DURATION,
            f"the clip starts at {start:g} s, after the end of the {source_duration:g} s {what}",
        )
    if clip.duration_seconds > 0:
        return start, min(clip.duration_seconds, remaining)
    return start, remaining


def _video_filter(fps: float, width: int, height: int) -> str:
    # fps first so frames that will be dropped are never scaled; setsar=1 makes anamorphic
    # sources square-pixel, which is what the computed display size assumes.
    steps = [f"fps={fps:g}"] if fps > 0 else []
    steps += [f"scale={width}:{height}", "setsar=1"]
    return ",".join(steps)


def video_encoder_args(
    codec: int,
    variant: job_pb2.VideoVariant,
    width: int,
    height: int,
    container: Container,
    *,
    gop_frames: int | None = None,
) -> list[str]:
    """Encoder, rate control and GOP options as (flag, value) pairs for one video stream.

    gop_frames replaces the variant's own keyframe interval (ladders compute theirs).
    """
    encoder = VIDEO_ENCODERS[codec]
    row = VIDEO_QUALITY[codec][variant.quality or Quality.QUALITY_STANDARD]
    args = ["-c:v", encoder.name, *row.speed_args, *encoder.fixed_args]
    if variant.bitrate_kbps > 0:
        rate = variant.bitrate_kbps
        args += ["-b:v", f"{rate}k"]
        if encoder.takes_peak_with_target_bitrate:
            args += ["-maxrate", f"{rate}k", "-bufsize", f"{2 * rate}k"]
    else:
        maxrate = row.maxrate_kbps(width, height)
        target = ["-b:v", f"{maxrate}k"] if encoder.caps_crf_with_target_bitrate else []
        args += ["-crf", str(row.crf), *target]
        args += ["-maxrate", f"{maxrate}k", "-bufsize", f"{2 * maxrate}k"]
    gop = variant.gop_frames if gop_frames is None else gop_frames
    if gop > 0:
        args += ["-g", str(gop)]
    if container.is_iso_bmff:
        args += list(encoder.iso_bmff_args)
    return args


def audio_args(
    audio: job_pb2.AudioSpec,
    source: job_pb2.StreamInfo,
    container: Container,
    notes: list[str],
) -> list[str]:
    codec = audio.codec or container.audio_codecs[0]
    if codec not in container.audio_codecs:
        raise OutputSpecError(
            f"{AudioCodec.Name(codec)} audio cannot go into {container.file_name}"
        )
    encoder = AUDIO_ENCODERS[codec]
    channels = min(audio.channels or source.channels or MAX_AUDIO_CHANNELS, MAX_AUDIO_CHANNELS)
    sample_rate = audio.sample_rate or DEFAULT_SAMPLE_RATE
    if encoder.sample_rates and sample_rate not in encoder.sample_rates:
        notes.append(
            f"audio: {sample_rate} Hz is not possible with {encoder.name}, "
            f"using {DEFAULT_SAMPLE_RATE} Hz"
        )
        sample_rate = DEFAULT_SAMPLE_RATE
    args = ["-c:a", encoder.name]
    if encoder.takes_bitrate:
        args += ["-b:a", f"{audio.bitrate_kbps or DEFAULT_AUDIO_BITRATE_KBPS}k"]
    return [*args, "-ac", str(channels), "-ar", str(sample_rate)]


def seconds_arg(value: float) -> str:
    # Millisecond precision is finer than any frame; fixed notation avoids "1e-05".
    return f"{value:.3f}".rstrip("0").rstrip(".") or "0"
