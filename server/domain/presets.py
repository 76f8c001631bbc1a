"""System presets: read-only output specs with stable slugs, shared by every organization.

Saved presets ("pst_…") belong to one organization and live in the store; both kinds are
referenced the same way from an output (`{"preset": "<id or slug>"}`).
"""

from __future__ import annotations

from dataclasses import dataclass

from kiln.v1 import job_pb2

from . import recipes
from .errors import FieldViolation, InvalidArgument
from .recipe_catalog import RECIPES

T = job_pb2.OutputType
V = job_pb2.VideoCodec
Q = job_pb2.Quality


@dataclass(frozen=True)
class SystemPreset:
    name: str
    description: str
    spec: job_pb2.OutputSpec


def _mp4(resolution: str, quality: job_pb2.Quality) -> job_pb2.OutputSpec:
    return job_pb2.OutputSpec(
        type=T.OUTPUT_TYPE_MP4,
        video=[
            job_pb2.VideoVariant(codec=V.VIDEO_CODEC_H264, resolution=resolution, quality=quality)
        ],
    )


def _ladder(kind: job_pb2.OutputType) -> job_pb2.OutputSpec:
    return job_pb2.OutputSpec(
        type=kind,
        video=[
            job_pb2.VideoVariant(codec=V.VIDEO_CODEC_H264, resolution=rung)
            for rung in ("1080p", "720p", "480p", "360p")
        ],
        segments=job_pb2.SegmentSpec(duration_seconds=6),
        hls=job_pb2.HlsSpec(segment_format=job_pb2.HLS_SEGMENT_FORMAT_FMP4)
        if kind == T.OUTPUT_TYPE_HLS
        else None,
    )


SYSTEM_PRESETS: dict[str, SystemPreset] = {
    "h264_1080p_standard": SystemPreset(
        "H.264 1080p", "Progressive MP4, H.264 STANDARD, AAC", _mp4("1080p", Q.QUALITY_STANDARD)
    ),
    "h264_720p_standard": SystemPreset(
        "H.264 720p", "Progressive MP4, H.264 STANDARD, AAC", _mp4("720p", Q.QUALITY_STANDARD)
    ),
    "h264_480p_economy": SystemPreset(
        "H.264 480p economy", "Progressive MP4, H.264 ECONOMY, AAC", _mp4("480p", Q.QUALITY_ECONOMY)
    ),
    "hls_h264_ladder": SystemPreset(
        "HLS ladder",
        "fMP4 HLS, H.264 1080p/720p/480p/360p, 6 s segments",
        _ladder(T.OUTPUT_TYPE_HLS),
    ),
    "dash_h264_ladder": SystemPreset(
        "DASH ladder", "DASH, H.264 1080p/720p/480p/360p, 6 s segments", _ladder(T.OUTPUT_TYPE_DASH)
    ),
    "thumbnail": SystemPreset(
        "Thumbnail",
        "One 640-pixel-wide JPEG at 1 s",
        job_pb2.OutputSpec(
            type=T.OUTPUT_TYPE_JPG, thumbnail=job_pb2.ThumbnailSpec(time_seconds=1, width=640)
        ),
    ),
    "audio_aac": SystemPreset(
        "AAC audio", "Audio only, M4A AAC 128 kbit/s", job_pb2.OutputSpec(type=T.OUTPUT_TYPE_M4A)
    ),
    # Xora's recipes that need no parameter, at their defaults (the others take parameters:
    # use them as {"recipe": {...}} outputs, or save a preset with your parameters).
    **{
        f"recipe_{name}": SystemPreset(
            f"Recipe {name}", RECIPES[name].doc, recipes.system_spec(name)
        )
        for name in ("web_ready", "compress", "proxy", "extract_audio", "transcode")
    },
}


def resolve(spec: job_pb2.OutputSpec, saved: dict[str, job_pb2.OutputSpec]) -> job_pb2.OutputSpec:
    """The inline spec a (validated) output refers to: a system slug or a saved preset, with
    any recipe expanded (the recipe kept on the spec, for the worker)."""
    resolved = job_pb2.OutputSpec()
    if spec.preset:
        system = SYSTEM_PRESETS.get(spec.preset)
        resolved.CopyFrom(system.spec if system else saved[spec.preset])
    else:
        resolved.CopyFrom(spec)
    if spec.output_origin_id:
        resolved.output_origin_id = spec.output_origin_id  # the request's wins over a preset's
    if spec.preset and spec.text_tracks:
        resolved.text_tracks.extend(spec.text_tracks)  # a preset has none of its own
    if spec.preset and spec.audio_tracks:
        resolved.audio_tracks.extend(spec.audio_tracks)  # nor audio tracks
    if not resolved.HasField("recipe"):
        return resolved
    expansion = recipes.expand(resolved)
    if expansion.spec is None:
        # Only a preset saved under older recipe rules can get here (requests are validated).
        raise InvalidArgument(
            [
                FieldViolation(f"preset {spec.preset}.{where}", text)
                for where, text in expansion.problems
            ]
        )
    return expansion.spec
