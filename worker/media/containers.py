"""Container tables: the muxer, file name and allowed codecs of every single-file output type.

Owns Container and the two tables keyed by OutputType: PROGRESSIVE_CONTAINERS (MP4, MOV, MKV,
WEBM) and AUDIO_CONTAINERS (MP3, M4A, OPUS, WAV). The first codec listed is the default when a
spec leaves it unset. Pure data; ladders keep their own containers in worker.media.ladder.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from kiln.v1 import job_pb2

VideoCodec = job_pb2.VideoCodec
AudioCodec = job_pb2.AudioCodec
OutputType = job_pb2.OutputType


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
_AAC, _OPUS, _MP3, _PCM, _EAC3 = (
    AudioCodec.AUDIO_CODEC_AAC,
    AudioCodec.AUDIO_CODEC_OPUS,
    AudioCodec.AUDIO_CODEC_MP3,
    AudioCodec.AUDIO_CODEC_PCM,
    AudioCodec.AUDIO_CODEC_EAC3,
)

PROGRESSIVE_CONTAINERS: Mapping[int, Container] = {
    # +faststart moves the index to the front so browsers can start playing before the end.
    OutputType.OUTPUT_TYPE_MP4: Container(
        "mp4",
        "output.mp4",
        (_H264, _H265, _AV1),
        (_AAC, _OPUS, _MP3, _EAC3),
        _FASTSTART,
        is_iso_bmff=True,
    ),
    # PCM in MOV is the editing-suite delivery (uncompressed audio beside the picture).
    OutputType.OUTPUT_TYPE_MOV: Container(
        "mov", "output.mov", (_H264, _H265), (_AAC, _PCM), _FASTSTART, is_iso_bmff=True
    ),
    OutputType.OUTPUT_TYPE_MKV: Container(
        "matroska", "output.mkv", (_H264, _H265, _VP9, _AV1), (_AAC, _OPUS, _MP3, _EAC3)
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
