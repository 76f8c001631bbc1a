"""The output-type catalogue: which kiln.v1 OutputType values belong to which family.

Every layer asks the same few questions of an output's type (one progressive file, an
adaptive ladder, audio alone, a picture?): the server's validation, recipes, pricing and
checks of worker reports, the worker's choice of command builder and the CLI's shorthand.
They ask this module, so that a type added to the API is placed in its family once and every
layer agrees on it. What a family's types are made of (muxers, file names, codecs each
container takes) stays with the code that writes them, in worker.media.

Families are tuples, not sets, because their order is seen: a recipe makes the first type of
its family when a spec names none, and lists them in that order when it refuses another.
"""

from __future__ import annotations

from kiln.v1 import job_pb2

T = job_pb2.OutputType
Family = tuple[job_pb2.OutputType, ...]

# One video variant (with its audio) in one file.
PROGRESSIVE: Family = (T.OUTPUT_TYPE_MP4, T.OUTPUT_TYPE_MOV, T.OUTPUT_TYPE_MKV, T.OUTPUT_TYPE_WEBM)
# A ladder of video variants in segments behind a manifest (HLS playlists, a DASH MPD, or
# both over shared CMAF segments).
ADAPTIVE: Family = (T.OUTPUT_TYPE_HLS, T.OUTPUT_TYPE_DASH, T.OUTPUT_TYPE_CMAF)
# Audio alone, in one file. M4A comes first: it is what an audio recipe makes by default.
AUDIO_ONLY: Family = (T.OUTPUT_TYPE_M4A, T.OUTPUT_TYPE_MP3, T.OUTPUT_TYPE_OPUS, T.OUTPUT_TYPE_WAV)
# One frame per file (a thumbnail, or each picture of a series or a sprite sheet).
STILL_IMAGES: Family = (T.OUTPUT_TYPE_JPG, T.OUTPUT_TYPE_PNG, T.OUTPUT_TYPE_WEBP)
# A clip as one looping picture file: an image for pricing and thumbnail settings, but built
# from a span of the input rather than one frame, so it is no still image.
ANIMATED_IMAGES: Family = (T.OUTPUT_TYPE_GIF,)
IMAGES: Family = STILL_IMAGES + ANIMATED_IMAGES

# Outputs made of video variants: what quality is measured for.
VIDEO: Family = PROGRESSIVE + ADAPTIVE
# One timed media file: the only outputs a custom command or concatenated inputs can make.
SINGLE_FILE_MEDIA: Family = PROGRESSIVE + AUDIO_ONLY
# Every type placed in a family: what the workers of this release build.
ALL: Family = PROGRESSIVE + ADAPTIVE + AUDIO_ONLY + IMAGES

# Video variants one output may have: an adaptive ladder's rungs (a progressive output has
# exactly one).
MAX_VARIANTS = 8


def short_name(kind: int) -> str:
    """The name users write and read: "MP4" for OUTPUT_TYPE_MP4 (ValueError if unknown)."""
    return T.Name(kind).removeprefix("OUTPUT_TYPE_")


def has_fmp4_segments(spec: job_pb2.OutputSpec) -> bool:
    """An adaptive output whose segments are fragmented MP4 behind init segments: DASH, CMAF,
    and HLS asked for fMP4 (MPEG-TS HLS segments carry their own timestamps and no init)."""
    return spec.type in (T.OUTPUT_TYPE_DASH, T.OUTPUT_TYPE_CMAF) or (
        spec.type == T.OUTPUT_TYPE_HLS
        and spec.hls.segment_format == job_pb2.HLS_SEGMENT_FORMAT_FMP4
    )


def muxes_audio_into_variants(spec: job_pb2.OutputSpec) -> bool:
    """A chunked output whose merge muxes its audio (when it has some) into every variant's
    segments, as one pass does: MPEG-TS HLS. Its chunks are video only and its AUDIO piece a
    separate rendition, which the live playlists name while the chunks run."""
    return spec.type == T.OUTPUT_TYPE_HLS and not has_fmp4_segments(spec)
