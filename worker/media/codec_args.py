"""Per-stream encoder arguments: the video and audio options of one encoded stream.

Owns video_encoder_args (encoder, speed, CRF or bitrate with its VBV cap, GOP, ISO-BMFF tags)
and audio_args (codec checked against the container, channels, sample rate, bitrate), which
read the tables of worker.media.encoders. Every builder that encodes uses these, so the rate
control policy lives in one place.
"""

from __future__ import annotations

from kiln.v1 import job_pb2

from worker.media.containers import Container
from worker.media.encoders import (
    AUDIO_ENCODERS,
    DEFAULT_AUDIO_BITRATE_KBPS,
    DEFAULT_SAMPLE_RATE,
    MAX_AUDIO_CHANNELS,
    VIDEO_ENCODERS,
    VIDEO_QUALITY,
)
from worker.media.errors import OutputSpecError

AudioCodec = job_pb2.AudioCodec
Quality = job_pb2.Quality


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
        # A variant's own CRF (compress, proxy) replaces the tier's; the tier's cap stays.
        args += ["-crf", str(variant.crf or row.crf), *target]
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
    *,
    start_at_zero: bool = False,
) -> list[str]:
    """Encoder, bitrate, channels and rate of one audio stream.

    start_at_zero makes the first encoded packet start at 0, where a ladder's video starts:
    the source is padded with silence (audio starting late) or trimmed (the encoder's priming,
    audio starting early) to start at the encoder delay, which the encoder then stamps as 0.
    Without it the first packet comes 1024 samples (AAC) before the video and every muxer
    shifts the streams apart, which players report as a gap at the start.
    """
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
    args += ["-ac", str(channels), "-ar", str(sample_rate)]
    if start_at_zero:
        args += ["-af", f"aresample={sample_rate}:first_pts={encoder.priming_at(sample_rate)}"]
    return args
