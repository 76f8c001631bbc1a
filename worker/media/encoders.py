"""Encoder tables: which FFmpeg encoder makes each codec, and at what speed, CRF and bitrate cap.

Owns the video quality policy (VIDEO_QUALITY rows scaling REFERENCE_MAXRATE_KBPS per codec and
tier), the per-encoder quirks (VIDEO_ENCODERS: fixed args, rate-control style, how to keep
keyframes aligned) and the audio encoders with their defaults. Pure data: worker.media.codec_args
turns a row into arguments.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from kiln.v1 import job_pb2

VideoCodec = job_pb2.VideoCodec
AudioCodec = job_pb2.AudioCodec
Quality = job_pb2.Quality


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


@dataclass(frozen=True)
class AudioEncoder:
    name: str
    takes_bitrate: bool = True
    # Sample rates the encoder accepts; empty means any.
    sample_rates: tuple[int, ...] = ()
    # Encoder delay: the samples of priming the encoder puts before the first input sample, so
    # that its first packet is stamped that much before the first frame's time (FFmpeg's aac:
    # 1024 at any rate; libopus: 312 at 48 kHz, scaled with the rate). Ladders trim as much
    # from the source so the first packet starts exactly where the video does.
    priming_samples: int = 0
    # The rate priming_samples are counted at; 0 means at the output sample rate.
    priming_rate: int = 0

    def priming_at(self, sample_rate: int) -> int:
        """Samples of encoder delay at `sample_rate`."""
        if not self.priming_rate:
            return self.priming_samples
        return self.priming_samples * sample_rate // self.priming_rate


AUDIO_ENCODERS: Mapping[int, AudioEncoder] = {
    AudioCodec.AUDIO_CODEC_AAC: AudioEncoder("aac", priming_samples=1024),
    AudioCodec.AUDIO_CODEC_OPUS: AudioEncoder(
        "libopus",
        sample_rates=(48000, 24000, 16000, 12000, 8000),
        priming_samples=312,
        priming_rate=48000,
    ),
    AudioCodec.AUDIO_CODEC_MP3: AudioEncoder(
        "libmp3lame", sample_rates=(48000, 44100, 32000, 24000, 22050, 16000)
    ),
    AudioCodec.AUDIO_CODEC_PCM: AudioEncoder("pcm_s16le", takes_bitrate=False),
    AudioCodec.AUDIO_CODEC_EAC3: AudioEncoder("eac3", sample_rates=(48000, 44100, 32000)),
}

DEFAULT_AUDIO_BITRATE_KBPS = 128
DEFAULT_SAMPLE_RATE = 48000
# What an unset channel count is capped at (and what concatenated inputs are joined in): 5.1
# only when asked (worker.media.channels).
MAX_AUDIO_CHANNELS = 2
