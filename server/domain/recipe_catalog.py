"""The recipes: each one's parameters, the output types it makes and the spec it builds."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kiln.v1 import job_pb2

from common.output_types import AUDIO_ONLY, PROGRESSIVE, SINGLE_FILE_MEDIA, STILL_IMAGES

T = job_pb2.OutputType
V = job_pb2.VideoCodec
Q = job_pb2.Quality

_CODEC_NAMES = {
    "h264": V.VIDEO_CODEC_H264,
    "h265": V.VIDEO_CODEC_H265,
    "vp9": V.VIDEO_CODEC_VP9,
    "av1": V.VIDEO_CODEC_AV1,
}
_QUALITY_NAMES = {
    "economy": Q.QUALITY_ECONOMY,
    "standard": Q.QUALITY_STANDARD,
    "premium": Q.QUALITY_PREMIUM,
}


# --- parameter parsers: text in, value out, ValueError with a plain message otherwise ---


def _number(low: float, high: float | None = None, *, above: bool = False) -> Callable[[str], Any]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a number") from None
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        if (above and value <= low) or value < low:
            raise ValueError(f"must be {'above' if above else 'at least'} {low:g}")
        if high is not None and value > high:
            raise ValueError(f"must be at most {high:g}")
        return value

    return parse


def _integer(low: int, high: int) -> Callable[[str], Any]:
    def parse(text: str) -> int:
        if not re.fullmatch(r"[+-]?\d{1,9}", text.strip()):
            raise ValueError(f"{text!r} is not a whole number")
        value = int(text)
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return value

    return parse


def _boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ValueError(f"{text!r} is not true or false")


def _choice(choices: Mapping[str, Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = choices.get(text.strip().lower())
        if value is None:
            raise ValueError(f"{text!r} is not one of {', '.join(choices)}")
        return value

    return parse


def _text(text: str) -> str:
    # Resolutions are checked by validation on the expanded variant, as inline ones are.
    if not text or len(text) > 32:
        raise ValueError("must be 1 to 32 characters")
    return text


@dataclass(frozen=True)
class Param:
    parse: Callable[[str], Any]
    # What the README says about it: meaning and default.
    doc: str
    default: Any = None
    required: bool = False
    # The expanded field this parameter sets, relative to the output ("video[0].crf"):
    # validation's complaints about that field are reported at the parameter instead.
    sets: str = ""


Params = dict[str, Any]


@dataclass(frozen=True)
class RecipeDefinition:
    doc: str
    # Output types it makes; the first is the default when the spec leaves type unset.
    types: tuple[job_pb2.OutputType, ...]
    params: Mapping[str, Param]
    # (output type, parameters with defaults filled in) -> the spec it makes.
    build: Callable[[job_pb2.OutputType, Params], job_pb2.OutputSpec]
    # Inline fields the recipe decides: an override must equal what it makes.
    fixed: tuple[str, ...] = ()
    # Checks between parameters: (parameter, message) pairs.
    relations: Callable[[Params], list[tuple[str, str]]] = field(default=lambda _: [])


def _video_codec(kind: job_pb2.OutputType, params: Params) -> job_pb2.VideoCodec:
    chosen: job_pb2.VideoCodec | None = params.get("codec")
    if chosen:
        return chosen
    return V.VIDEO_CODEC_VP9 if kind == T.OUTPUT_TYPE_WEBM else V.VIDEO_CODEC_H264


def _variant(kind: job_pb2.OutputType, params: Params, **fields: Any) -> job_pb2.VideoVariant:
    variant = job_pb2.VideoVariant(codec=_video_codec(kind, params), **fields)
    for name in ("resolution", "crf", "bitrate_kbps", "fps", "quality", "allow_upscale"):
        if params.get(name) is not None:
            setattr(variant, name, params[name])
    return variant


def _video_or_audio(kind: job_pb2.OutputType, params: Params, **fields: Any) -> job_pb2.OutputSpec:
    """A progressive file (one variant) or, for an audio type, the audio alone."""
    if kind in AUDIO_ONLY:
        return job_pb2.OutputSpec(type=kind)
    return job_pb2.OutputSpec(type=kind, video=[_variant(kind, params, **fields)])


def _thumbnail(kind: job_pb2.OutputType, params: Params) -> job_pb2.OutputSpec:
    thumbnail = job_pb2.ThumbnailSpec(
        mode=job_pb2.THUMBNAIL_MODE_SINGLE, time_seconds=params["seek_seconds"]
    )
    if params.get("width"):
        thumbnail.width = params["width"]
    return job_pb2.OutputSpec(type=kind, thumbnail=thumbnail)


def _compress(kind: job_pb2.OutputType, params: Params) -> job_pb2.OutputSpec:
    # ECONOMY: the tier's CRF (28 for H.264) unless crf is given, and its lower bitrate cap.
    return _video_or_audio(kind, params, quality=Q.QUALITY_ECONOMY)


def _web_ready(kind: job_pb2.OutputType, params: Params) -> job_pb2.OutputSpec:
    return job_pb2.OutputSpec(
        type=kind,
        video=[job_pb2.VideoVariant(codec=V.VIDEO_CODEC_H264, quality=Q.QUALITY_STANDARD)],
        audio=job_pb2.AudioSpec(codec=job_pb2.AUDIO_CODEC_AAC),
    )


def _proxy(kind: job_pb2.OutputType, params: Params) -> job_pb2.OutputSpec:
    gop = 1 if params["all_intra"] else 0
    return _video_or_audio(kind, params, quality=Q.QUALITY_ECONOMY, gop_frames=gop)


def _trim(kind: job_pb2.OutputType, params: Params) -> job_pb2.OutputSpec:
    spec = _video_or_audio(kind, params)
    spec.clip.start_seconds = params["start_seconds"]
    if params.get("duration_seconds") is not None:
        spec.clip.duration_seconds = params["duration_seconds"]
    elif params.get("end_seconds") is not None:
        spec.clip.duration_seconds = params["end_seconds"] - params["start_seconds"]
    return spec


def _trim_relations(params: Params) -> list[tuple[str, str]]:
    problems = []
    given = [
        name for name in ("start_seconds", "end_seconds", "duration_seconds") if name in params
    ]
    if not given:
        problems.append(
            ("end_seconds", "trim needs start_seconds, end_seconds or duration_seconds")
        )
    if "end_seconds" in params and "duration_seconds" in params:
        problems.append(("duration_seconds", "give end_seconds or duration_seconds, not both"))
    elif params.get("end_seconds", math.inf) <= params.get("start_seconds", 0.0):
        problems.append(("end_seconds", "must be after start_seconds"))
    return problems


def _extract_audio(kind: job_pb2.OutputType, params: Params) -> job_pb2.OutputSpec:
    spec = job_pb2.OutputSpec(type=kind)
    if params.get("bitrate_kbps"):
        spec.audio.bitrate_kbps = params["bitrate_kbps"]
    return spec


_CRF = Param(
    _integer(1, 63),
    "constant rate factor: 1-51 for H.264/H.265, 1-63 for VP9/AV1",
    sets="video[0].crf",
)
_RESOLUTION = Param(_text, '"720p"-style height or "WxH" box', sets="video[0].resolution")

RECIPES: Mapping[str, RecipeDefinition] = {
    "thumbnail": RecipeDefinition(
        "one still image",
        # Not GIF: a GIF is made of a clip, and would silently ignore seek_seconds.
        STILL_IMAGES,
        {
            "seek_seconds": Param(
                _number(0), "time of the frame in seconds", 1.0, sets="thumbnail.time_seconds"
            ),
            "width": Param(
                _integer(16, 4096), "image width; the source's when unset", sets="thumbnail.width"
            ),
        },
        _thumbnail,
    ),
    "compress": RecipeDefinition(
        "a smaller file at the source's size: the ECONOMY tier at a chosen CRF",
        PROGRESSIVE,
        {
            "crf": Param(
                _CRF.parse,
                "constant rate factor; the ECONOMY tier's when unset (28 for H.264, 38 VP9)",
                sets=_CRF.sets,
            )
        },
        _compress,
    ),
    "web_ready": RecipeDefinition(
        "an MP4 that starts playing at once in any browser: H.264/AAC with the index in front; "
        "an input already H.264 in MP4/MOV/MKV keeps its video bitstream (stream copy)",
        (T.OUTPUT_TYPE_MP4,),
        {},
        _web_ready,
        fixed=("video", "clip"),
    ),
    "proxy": RecipeDefinition(
        "a light editing proxy: scaled down, fast to decode",
        (T.OUTPUT_TYPE_MP4, T.OUTPUT_TYPE_MOV),
        {
            "resolution": Param(_text, _RESOLUTION.doc, "720p", sets=_RESOLUTION.sets),
            "crf": Param(
                _CRF.parse, "constant rate factor; 28 (ECONOMY) when unset", sets=_CRF.sets
            ),
            "all_intra": Param(
                _boolean,
                "every frame a keyframe, for frame-exact scrubbing",
                False,
                sets="video[0].gop_frames",
            ),
        },
        _proxy,
    ),
    "resize": RecipeDefinition(
        "the video at another size (never above the source unless allow_upscale)",
        PROGRESSIVE,
        {
            "resolution": Param(_text, _RESOLUTION.doc, required=True, sets=_RESOLUTION.sets),
            "allow_upscale": Param(
                _boolean, "allow a size above the source", False, sets="video[0].allow_upscale"
            ),
            "crf": _CRF,
        },
        _video_or_audio,
    ),
    "trim": RecipeDefinition(
        "a part of the input, cut frame-exactly (re-encoded)",
        SINGLE_FILE_MEDIA,
        {
            "start_seconds": Param(
                _number(0), "where the part starts", 0.0, sets="clip.start_seconds"
            ),
            "end_seconds": Param(
                _number(0, above=True),
                "where it ends; the input's end when unset",
                sets="clip.duration_seconds",
            ),
            "duration_seconds": Param(
                _number(0, above=True),
                "its length, instead of end_seconds",
                sets="clip.duration_seconds",
            ),
        },
        _trim,
        relations=_trim_relations,
    ),
    "extract_audio": RecipeDefinition(
        "the audio alone; the source's stream copied when it is already the output's codec "
        "(AAC to M4A, MP3 to MP3, Opus to OPUS, 16-bit PCM to WAV) and no bitrate is asked",
        AUDIO_ONLY,
        {
            "bitrate_kbps": Param(
                _integer(8, 640),
                "encode at this bitrate (no stream copy); 128 when encoding",
                sets="audio.bitrate_kbps",
            )
        },
        _extract_audio,
    ),
    "concat": RecipeDefinition(
        "the job's inputs (input_url, then concat_input_urls) one after the other",
        SINGLE_FILE_MEDIA,
        {
            "resolution": Param(
                _text, _RESOLUTION.doc + "; the first input's when unset", sets=_RESOLUTION.sets
            )
        },
        _video_or_audio,
    ),
    "transcode": RecipeDefinition(
        "the input in another codec or container",
        PROGRESSIVE,
        {
            "codec": Param(
                _choice(_CODEC_NAMES),
                "h264, h265, vp9 or av1; h264 (vp9 for WEBM) when unset",
                sets="video[0].codec",
            ),
            "resolution": Param(
                _text, _RESOLUTION.doc + "; the source's when unset", sets=_RESOLUTION.sets
            ),
            "quality": Param(
                _choice(_QUALITY_NAMES),
                "economy, standard or premium; standard when unset",
                sets="video[0].quality",
            ),
            "crf": _CRF,
            "bitrate_kbps": Param(
                _integer(1, 200_000),
                "target video bitrate instead of CRF",
                sets="video[0].bitrate_kbps",
            ),
            "fps": Param(
                _number(1, 120), "frame rate; the source's when unset", sets="video[0].fps"
            ),
        },
        _video_or_audio,
    ),
}
