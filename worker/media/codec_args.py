"""Per-stream encoder arguments: the video and audio options of one encoded stream.

Owns video_encoder_args (encoder, speed, CRF or bitrate with its VBV cap, GOP, ISO-BMFF tags)
and audio_args (codec checked against the container, channels, sample rate, bitrate), which
read the tables of worker.media.encoders. Every builder that encodes uses these, so the rate
control policy lives in one place.
"""

from __future__ import annotations

from kiln.v1 import job_pb2

from worker.media.channels import channel_plan
from worker.media.containers import Container
from worker.media.encoders import (
    AUDIO_ENCODERS,
    DEFAULT_AUDIO_BITRATE_KBPS,
    DEFAULT_SAMPLE_RATE,
    VIDEO_ENCODERS,
    VIDEO_QUALITY,
)
from worker.media.errors import OutputSpecError
from worker.media.loudness import SecondPass

AudioCodec = job_pb2.AudioCodec
Quality = job_pb2.Quality

# Encoders that cannot take every channel count the API offers (LAME: mono and stereo).
MAX_ENCODER_CHANNELS: dict[int, int] = {AudioCodec.AUDIO_CODEC_MP3: 2}


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
    loudness: SecondPass | None = None,
    from_filter_graph: bool = False,
) -> list[str]:
    """Encoder, bitrate, channels, rate and audio filters of one audio stream.

    The filters, in order: the down-mix of worker.media.channels, loudness normalization's
    second pass (worker.media.loudness) and the start alignment below. from_filter_graph: the
    stream comes out of a -filter_complex (concatenation), which already made its layout, and
    an output stream fed by one takes no -af.

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
    layout = channel_plan(audio, source, notes)
    if layout.channels > MAX_ENCODER_CHANNELS.get(codec, layout.channels):
        raise OutputSpecError(
            f"{AudioCodec.Name(codec)} carries at most {MAX_ENCODER_CHANNELS[codec]} channels"
        )
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
    args += ["-ac", str(layout.channels), "-ar", str(sample_rate)]
    if from_filter_graph:
        if loudness is not None:
            raise OutputSpecError("loudness is not normalized in a filter graph of joined inputs")
        return args
    filters = [layout.downmix] if layout.downmix else []
    if loudness is not None:
        # loudnorm works at 192 kHz; the resampler below (or -ar) brings it to the output rate.
        filters.append(loudness.filter())
    if start_at_zero:
        filters.append(f"aresample={sample_rate}:first_pts={encoder.priming_at(sample_rate)}")
    if filters:
        args += ["-af", ",".join(filters)]
    return args
