"""Validation of one output spec (inline, a preset's name, or a recipe expanded)."""

from __future__ import annotations

import math
import re

from kiln.v1 import job_pb2

from common.custom_command import check_custom_args
from common.loudness import loudness_problems
from common.output_types import (
    ADAPTIVE,
    ALL,
    AUDIO_ONLY,
    IMAGES,
    MAX_VARIANTS,
    PROGRESSIVE,
    SINGLE_FILE_MEDIA,
    VIDEO,
)

from . import recipes
from .encryption_validation import check_encryption
from .overlay_validation import check_overlays

T = job_pb2.OutputType
V = job_pb2.VideoCodec
A = job_pb2.AudioCodec

# Each enum's known values, built once: EnumTypeWrapper.values() builds a list per call.
OUTPUT_TYPES = frozenset(T.values())
VIDEO_CODECS = frozenset(V.values())
AUDIO_CODECS = frozenset(A.values())
QUALITIES = frozenset(job_pb2.Quality.values())
THUMBNAIL_MODES = frozenset(job_pb2.ThumbnailMode.values())

# Which video codecs each container can carry, limited to what players take: AV1 plays from MP4
# in <video> and from fMP4 HLS, DASH and CMAF through MSE (hls.js, dash.js; Chromium checked),
# never from MPEG-TS segments (see _check_av1_hls). H.265 is for Apple players (Chromium on
# Linux has no HEVC).
VIDEO_CODECS_BY_TYPE: dict[int, set[int]] = {
    T.OUTPUT_TYPE_MP4: {V.VIDEO_CODEC_H264, V.VIDEO_CODEC_H265, V.VIDEO_CODEC_AV1},
    T.OUTPUT_TYPE_MOV: {V.VIDEO_CODEC_H264, V.VIDEO_CODEC_H265},
    T.OUTPUT_TYPE_MKV: {V.VIDEO_CODEC_H264, V.VIDEO_CODEC_H265},
    T.OUTPUT_TYPE_WEBM: {V.VIDEO_CODEC_VP9, V.VIDEO_CODEC_AV1},
    T.OUTPUT_TYPE_HLS: {V.VIDEO_CODEC_H264, V.VIDEO_CODEC_H265, V.VIDEO_CODEC_AV1},
    T.OUTPUT_TYPE_DASH: {
        V.VIDEO_CODEC_H264,
        V.VIDEO_CODEC_H265,
        V.VIDEO_CODEC_VP9,
        V.VIDEO_CODEC_AV1,
    },
    T.OUTPUT_TYPE_CMAF: {V.VIDEO_CODEC_H264, V.VIDEO_CODEC_H265, V.VIDEO_CODEC_AV1},
}

AUDIO_CODECS_BY_TYPE: dict[int, set[int]] = {
    T.OUTPUT_TYPE_MP4: {A.AUDIO_CODEC_AAC, A.AUDIO_CODEC_MP3, A.AUDIO_CODEC_EAC3},
    T.OUTPUT_TYPE_MOV: {A.AUDIO_CODEC_AAC, A.AUDIO_CODEC_PCM},
    T.OUTPUT_TYPE_MKV: {
        A.AUDIO_CODEC_AAC,
        A.AUDIO_CODEC_OPUS,
        A.AUDIO_CODEC_MP3,
        A.AUDIO_CODEC_EAC3,
    },
    T.OUTPUT_TYPE_WEBM: {A.AUDIO_CODEC_OPUS},
    T.OUTPUT_TYPE_HLS: {A.AUDIO_CODEC_AAC},
    T.OUTPUT_TYPE_DASH: {A.AUDIO_CODEC_AAC, A.AUDIO_CODEC_OPUS},
    T.OUTPUT_TYPE_CMAF: {A.AUDIO_CODEC_AAC},
    T.OUTPUT_TYPE_MP3: {A.AUDIO_CODEC_MP3},
    T.OUTPUT_TYPE_M4A: {A.AUDIO_CODEC_AAC},
    T.OUTPUT_TYPE_OPUS: {A.AUDIO_CODEC_OPUS},
    T.OUTPUT_TYPE_WAV: {A.AUDIO_CODEC_PCM},
}

# What the workers of this release can produce. The API defines more; asking
# for the rest fails at Create rather than after a wasted probe.
SUPPORTED_OUTPUT_TYPES = frozenset(ALL)
SUPPORTED_VIDEO_CODECS: set[int] = {
    V.VIDEO_CODEC_H264,
    V.VIDEO_CODEC_H265,
    V.VIDEO_CODEC_VP9,
    V.VIDEO_CODEC_AV1,
}
SUPPORTED_THUMBNAIL_MODES: set[int] = {
    job_pb2.THUMBNAIL_MODE_UNSPECIFIED,
    job_pb2.THUMBNAIL_MODE_SINGLE,
    job_pb2.THUMBNAIL_MODE_INTERVAL,
    job_pb2.THUMBNAIL_MODE_TIMESTAMPS,
    job_pb2.THUMBNAIL_MODE_SPRITE,
}
# Image series sample at most ten frames a second; how many that makes is checked against
# the probed duration (input_fit.MAX_SERIES_IMAGES).
MIN_IMAGE_INTERVAL_SECONDS = 0.1
# SVT-AV1 refuses pictures smaller than 64 pixels on a side.
MIN_AV1_DIMENSION = 64
MAX_THUMBNAIL_TIMESTAMPS = 100

# CRF scales: x264/x265 0-51, libvpx-vp9 and SVT-AV1 0-63 (0, lossless, is not offered).
MAX_CRF = {
    V.VIDEO_CODEC_H264: 51,
    V.VIDEO_CODEC_H265: 51,
    V.VIDEO_CODEC_VP9: 63,
    V.VIDEO_CODEC_AV1: 63,
}

MAX_DIMENSION = 8192
NAMED_RESOLUTIONS = {"2160p", "1440p", "1080p", "720p", "480p", "360p", "240p"}
_EXPLICIT_RESOLUTION = re.compile(r"^(\d{1,5})x(\d{1,5})$")
_SAMPLE_RATES = {8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000}
# libopus encodes only these rates; FFmpeg fails on any other explicit -ar.
_OPUS_SAMPLE_RATES = {8000, 12000, 16000, 24000, 48000}
# FFmpeg's eac3 encoder takes these rates only.
_EAC3_SAMPLE_RATES = {32000, 44100, 48000}
# Mono, stereo, 5.1. LAME encodes at most two channels, so MP3 takes no 5.1.
CHANNEL_COUNTS = (1, 2, 6)


def check_output(
    path: str, output: job_pb2.OutputSpec, known_presets: set[str], bad
) -> job_pb2.OutputSpec:
    """Report the problems of one output; return the spec it means (a recipe expanded)."""
    if output.HasField("recipe"):
        return _check_recipe(path, output, bad)
    _check_inline(path, output, known_presets, bad)
    return output


def _check_recipe(path: str, output: job_pb2.OutputSpec, bad) -> job_pb2.OutputSpec:
    """A recipe's own problems, then the expanded spec's, each at the path that caused it:
    a field a parameter set is reported at the parameter."""
    expansion = recipes.expand(output)
    for where, description in expansion.problems:
        bad(f"{path}.{where}", description)
    if expansion.spec is None:
        return output

    def bad_expanded(where: str, description: str) -> None:
        relative = where.removeprefix(f"{path}.")
        bad(f"{path}.{expansion.sources.get(relative, relative)}", description)

    inline = job_pb2.OutputSpec()
    inline.CopyFrom(expansion.spec)
    inline.ClearField("recipe")
    _check_inline(path, inline, set(), bad_expanded)
    return expansion.spec


def _check_inline(path: str, output: job_pb2.OutputSpec, known_presets: set[str], bad) -> None:
    if output.preset:
        inline = job_pb2.OutputSpec()
        inline.CopyFrom(output)
        inline.ClearField("preset")
        # Where the output goes is not how it is encoded: allowed beside a preset.
        inline.ClearField("output_origin_id")
        # Nor are its text tracks (a job's own files), checked with the request's input policy.
        inline.ClearField("text_tracks")
        inline.ClearField("audio_tracks")
        if inline.ByteSize():
            bad(path, "set either preset or an inline spec, not both")
        if output.preset not in known_presets:
            bad(f"{path}.preset", f"unknown preset {output.preset!r}")
        return
    kind = output.type
    if kind == T.OUTPUT_TYPE_UNSPECIFIED:
        bad(f"{path}.type", "is required")
        return
    if kind not in OUTPUT_TYPES:
        bad(f"{path}.type", f"unknown output type {kind}")
        return
    type_name = T.Name(kind).removeprefix("OUTPUT_TYPE_")
    if kind not in SUPPORTED_OUTPUT_TYPES:
        bad(f"{path}.type", f"{type_name} outputs are not supported by this server yet")
    if output.measure_quality and (output.HasField("custom") or kind not in VIDEO):
        what = "custom commands" if output.HasField("custom") else f"{type_name} outputs"
        bad(
            f"{path}.measure_quality",
            f"quality is measured for MP4, WEBM, MOV, MKV, HLS, DASH and CMAF outputs, not {what}",
        )
    check_overlays(path, output, bad)
    check_encryption(path, output, bad)

    if output.HasField("custom"):
        _check_custom(path, type_name, output, bad)
        return
    variants = output.video
    if kind in PROGRESSIVE and len(variants) != 1:
        bad(f"{path}.video", f"{type_name} takes exactly one video variant")
    elif kind in ADAPTIVE and not 1 <= len(variants) <= MAX_VARIANTS:
        bad(f"{path}.video", f"{type_name} takes 1 to {MAX_VARIANTS} video variants")
    elif (kind in AUDIO_ONLY or kind in IMAGES) and variants:
        bad(f"{path}.video", f"{type_name} outputs take no video variants")
    for index, variant in enumerate(variants):
        _check_variant(f"{path}.video[{index}]", kind, variant, bad)
    if kind == T.OUTPUT_TYPE_HLS:
        _check_av1_hls(path, output, bad)

    if output.HasField("audio"):
        _check_audio(f"{path}.audio", kind, output.audio, bad)
    if output.HasField("segments"):
        seconds = output.segments.duration_seconds
        if seconds and not 1 <= seconds <= 60:
            bad(f"{path}.segments.duration_seconds", "must be between 1 and 60")
    if output.HasField("thumbnail"):
        _check_thumbnail(f"{path}.thumbnail", kind, output.thumbnail, bad)
    if output.HasField("clip"):
        if output.clip.start_seconds < 0:
            bad(f"{path}.clip.start_seconds", "must not be negative")
        if output.clip.duration_seconds < 0:
            bad(f"{path}.clip.duration_seconds", "must not be negative")


def _check_custom(path: str, type_name: str, output: job_pb2.OutputSpec, bad) -> None:
    """A custom command says everything itself: the spec has its type and nothing else."""
    if output.type not in SINGLE_FILE_MEDIA:
        bad(f"{path}.type", "custom commands make MP4, MOV, MKV, WEBM, MP3, M4A, OPUS or WAV")
        return
    for name in ("video", "audio", "segments", "hls", "clip", "thumbnail"):
        if (name == "video" and output.video) or (name != "video" and output.HasField(name)):
            bad(f"{path}.{name}", "must be empty with custom: the command says it")
    for violation in check_custom_args(list(output.custom.args), type_name):
        where = "" if violation.index is None else f"[{violation.index}]"
        bad(f"{path}.custom.args{where}", violation.message)


def _check_variant(path: str, kind: int, variant: job_pb2.VideoVariant, bad) -> None:
    if variant.codec == V.VIDEO_CODEC_UNSPECIFIED:
        bad(f"{path}.codec", "is required")
    elif variant.codec not in VIDEO_CODECS:
        bad(f"{path}.codec", f"unknown codec {variant.codec}")
    elif variant.codec not in VIDEO_CODECS_BY_TYPE.get(kind, set()):
        codec = V.Name(variant.codec).removeprefix("VIDEO_CODEC_")
        bad(
            f"{path}.codec",
            f"{codec} cannot be used in {T.Name(kind).removeprefix('OUTPUT_TYPE_')}",
        )
    elif variant.codec not in SUPPORTED_VIDEO_CODECS:
        codec = V.Name(variant.codec).removeprefix("VIDEO_CODEC_")
        bad(f"{path}.codec", f"{codec} is not supported by this server yet")
    if variant.resolution:
        problem = resolution_problem(variant.resolution)
        if problem:
            bad(f"{path}.resolution", problem)
        elif (
            variant.codec == V.VIDEO_CODEC_AV1
            and _smallest_side(variant.resolution) < MIN_AV1_DIMENSION
        ):
            bad(f"{path}.resolution", f"AV1 needs at least {MIN_AV1_DIMENSION} pixels on each side")
    if variant.quality not in QUALITIES:
        bad(f"{path}.quality", f"unknown quality {variant.quality}")
    if not 0 <= variant.bitrate_kbps <= 200_000:
        bad(f"{path}.bitrate_kbps", "must be between 0 and 200000")
    if variant.fps and not 1 <= variant.fps <= 120:
        bad(f"{path}.fps", "must be between 1 and 120")
    if not 0 <= variant.gop_frames <= 1000:
        bad(f"{path}.gop_frames", "must be between 0 and 1000")
    highest_crf = MAX_CRF.get(variant.codec, 51)
    if variant.crf and not 1 <= variant.crf <= highest_crf:
        codec = V.Name(variant.codec).removeprefix("VIDEO_CODEC_") if variant.codec else "it"
        bad(f"{path}.crf", f"must be between 1 and {highest_crf} for {codec}")


def _check_av1_hls(path: str, output: job_pb2.OutputSpec, bad) -> None:
    """AV1 has no MPEG-TS mapping that players read: an AV1 HLS ladder needs fMP4 segments."""
    if output.hls.segment_format == job_pb2.HLS_SEGMENT_FORMAT_FMP4:
        return
    for index, variant in enumerate(output.video):
        if variant.codec == V.VIDEO_CODEC_AV1:
            bad(
                f"{path}.video[{index}].codec",
                "AV1 in HLS needs fMP4 segments: set hls.segment_format to HLS_SEGMENT_FORMAT_FMP4",
            )


def resolution_problem(resolution: str) -> str | None:
    if resolution in NAMED_RESOLUTIONS:
        return None
    match = _EXPLICIT_RESOLUTION.fullmatch(resolution)
    if not match:
        return f"{resolution!r} is not one of {sorted(NAMED_RESOLUTIONS)} or WxH"
    width, height = int(match[1]), int(match[2])
    if not (16 <= width <= MAX_DIMENSION and 16 <= height <= MAX_DIMENSION):
        return f"dimensions must be between 16 and {MAX_DIMENSION}"
    if width % 2 or height % 2:
        return "width and height must be even"
    return None


def check_audio_settings(path: str, kind: int, audio: job_pb2.AudioSpec, bad) -> None:
    """Codec, bitrate, channels and rate of audio in an output of type `kind` (also each
    audio track's own settings, server.domain.audio_track_checks)."""
    _check_audio(path, kind, audio, bad)


def _check_audio(path: str, kind: int, audio: job_pb2.AudioSpec, bad) -> None:
    if audio.codec not in AUDIO_CODECS:
        bad(f"{path}.codec", f"unknown codec {audio.codec}")
    elif audio.codec and audio.codec not in AUDIO_CODECS_BY_TYPE.get(kind, set()):
        codec = A.Name(audio.codec).removeprefix("AUDIO_CODEC_")
        bad(
            f"{path}.codec",
            f"{codec} cannot be used in {T.Name(kind).removeprefix('OUTPUT_TYPE_')}",
        )
    if audio.bitrate_kbps and not 8 <= audio.bitrate_kbps <= 640:
        bad(f"{path}.bitrate_kbps", "must be between 8 and 640")
    if audio.channels and audio.channels not in CHANNEL_COUNTS:
        bad(f"{path}.channels", "must be 1, 2 or 6 (5.1)")
    elif audio.channels == 6 and (
        audio.codec == A.AUDIO_CODEC_MP3 or (not audio.codec and kind == T.OUTPUT_TYPE_MP3)
    ):
        bad(f"{path}.channels", "MP3 carries at most 2 channels: use AAC, E-AC-3, Opus or PCM")
    opus = audio.codec == A.AUDIO_CODEC_OPUS or (
        not audio.codec and kind in (T.OUTPUT_TYPE_WEBM, T.OUTPUT_TYPE_OPUS)
    )
    rates = _OPUS_SAMPLE_RATES if opus else _SAMPLE_RATES
    if audio.codec == A.AUDIO_CODEC_EAC3:
        rates = _EAC3_SAMPLE_RATES
    if audio.sample_rate and audio.sample_rate not in rates:
        bad(f"{path}.sample_rate", f"must be one of {sorted(rates)}")
    if kind in IMAGES and (audio.channels or audio.HasField("loudness")):
        bad(path, f"{T.Name(kind).removeprefix('OUTPUT_TYPE_')} outputs have no audio")
    elif audio.HasField("loudness"):
        if audio.disabled:
            bad(f"{path}.loudness", "audio is disabled: there is nothing to normalize")
        for field, message in loudness_problems(audio.loudness):
            bad(f"{path}.loudness.{field}", message)


def _smallest_side(resolution: str) -> int:
    match = _EXPLICIT_RESOLUTION.fullmatch(resolution)
    if match:
        return min(int(match[1]), int(match[2]))
    return int(resolution.removesuffix("p"))


def _check_thumbnail(path: str, kind: int, thumbnail: job_pb2.ThumbnailSpec, bad) -> None:
    if kind not in IMAGES:
        bad(path, "thumbnail settings apply to image outputs only")
        return
    if thumbnail.mode not in THUMBNAIL_MODES:
        bad(f"{path}.mode", f"unknown mode {thumbnail.mode}")
    elif thumbnail.mode not in SUPPORTED_THUMBNAIL_MODES:
        mode = job_pb2.ThumbnailMode.Name(thumbnail.mode).removeprefix("THUMBNAIL_MODE_")
        bad(f"{path}.mode", f"{mode} is not supported by this server yet")
    series = thumbnail.mode not in (
        job_pb2.THUMBNAIL_MODE_UNSPECIFIED,
        job_pb2.THUMBNAIL_MODE_SINGLE,
    )
    if series and kind == T.OUTPUT_TYPE_GIF:
        bad(f"{path}.mode", "a GIF is one animated image; image series are JPG, PNG or WEBP")
    if not math.isfinite(thumbnail.time_seconds) or thumbnail.time_seconds < 0:
        bad(f"{path}.time_seconds", "must be a finite number, not negative")
    if not math.isfinite(thumbnail.interval_seconds) or thumbnail.interval_seconds < 0:
        bad(f"{path}.interval_seconds", "must be a finite number, not negative")
    elif 0 < thumbnail.interval_seconds < MIN_IMAGE_INTERVAL_SECONDS:
        bad(f"{path}.interval_seconds", f"must be at least {MIN_IMAGE_INTERVAL_SECONDS:g} s")
    needs_interval = (job_pb2.THUMBNAIL_MODE_INTERVAL, job_pb2.THUMBNAIL_MODE_SPRITE)
    if thumbnail.mode in needs_interval and thumbnail.interval_seconds == 0:
        bad(f"{path}.interval_seconds", "is required for INTERVAL and SPRITE")
    if thumbnail.mode == job_pb2.THUMBNAIL_MODE_TIMESTAMPS and not thumbnail.timestamps_seconds:
        bad(f"{path}.timestamps_seconds", "is required for TIMESTAMPS")
    if len(thumbnail.timestamps_seconds) > MAX_THUMBNAIL_TIMESTAMPS:
        bad(f"{path}.timestamps_seconds", f"at most {MAX_THUMBNAIL_TIMESTAMPS} timestamps")
    if any(not math.isfinite(t) or t < 0 for t in thumbnail.timestamps_seconds):
        bad(f"{path}.timestamps_seconds", "must be finite numbers, not negative")
    if thumbnail.width and not 16 <= thumbnail.width <= 4096:
        bad(f"{path}.width", "must be between 16 and 4096")
    if not 0 <= thumbnail.columns <= 20:
        bad(f"{path}.columns", "must be between 1 and 20")
