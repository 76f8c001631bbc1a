"""What the server accepts from a worker. No I/O: the use cases add the storage check.

The server trusts no worker: a compromised or buggy one holding a valid token and lease
could otherwise point a job at another job's files, zero its cost, or fill `input_info` with
nonsense that later code divides by. Every result is checked here before anything is
recorded; a problem is described in words that go to the log and to the job's error.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from kiln.v1 import job_pb2
from kiln.worker.v1 import worker_service_pb2

from common.hls_playlists import muxed_segment_path
from common.output_types import (
    ADAPTIVE,
    IMAGES,
    MAX_VARIANTS,
    has_fmp4_segments,
    muxes_audio_into_variants,
)
from common.storage.keys import safe_relative_path

from . import fmp4_pieces
from .loudness_reports import loudness_report_problems, track_loudness_problems
from .qc_reports import qc_report_problems

T = job_pb2.OutputType
S = job_pb2.JobStage

# Error codes a worker may report. Anything else would let a worker invent user-facing
# outcomes (a made-up INPUT_* code makes a job REJECTED).
WORKER_ERROR_CODES = frozenset(
    {
        "INPUT_UNREADABLE",
        "INPUT_REFUSED",
        "INPUT_EMPTY",
        "INPUT_NOT_MEDIA",
        "INPUT_CORRUPT",
        "INPUT_NO_VIDEO",
        "INPUT_NO_AUDIO",
        "INPUT_ZERO_DURATION",
        "INPUT_DIMENSIONS_TOO_LARGE",
        "INPUT_UNSUPPORTED_CODEC",
        "ENCODE_FAILED",
        "WORKER_ERROR",
        "UNSUPPORTED_COMMAND",
        # The worker's builders could not make the spec (the server should have refused it).
        "OUTPUT_SPEC_UNSUPPORTED",
        # An organization's origin could not be reached (retryable) or refused a transfer.
        "STORAGE_UNAVAILABLE",
        "STORAGE_REFUSED",
        # The worker's scratch disk filled up mid-task (retryable: elsewhere, or later).
        "SCRATCH_FULL",
        # An overlay's image is not a PNG within the limits (docs/overlays.md).
        "OVERLAY_INVALID",
        # A text track's sidecar is no subtitle file (or a broken one), or is over 10 MB.
        "TEXT_TRACK_INVALID",
        "TEXT_TRACK_TOO_LARGE",
        # An audio track's extra file has no audio stream (docs/audio-tracks.md).
        "AUDIO_TRACK_INVALID",
    }
)
# Stages a running task may report.
RUNNING_STAGES = frozenset(
    {
        S.JOB_STAGE_UNSPECIFIED,
        S.JOB_STAGE_PROBING,
        S.JOB_STAGE_PLANNING,
        S.JOB_STAGE_TRANSCODING,
        S.JOB_STAGE_MERGING,
        S.JOB_STAGE_PACKAGING,
        S.JOB_STAGE_UPLOADING,
    }
)

MAX_FILES = 50_000  # an 8-rung, two-hour ladder in 2 s segments is ~29,000 files
MAX_NOTES = 50
MAX_TEXT = 2_000
MAX_DIMENSION = 8192
MAX_STREAMS = 64
MAX_INPUT_SECONDS = 7 * 24 * 3600.0
# Generous: odd files report 1000 fps time bases; forged values beyond this inflate costs.
MAX_FRAME_RATE = 10_000.0
# Encoded duration may differ from the plan by container rounding (a frame, a segment tail).
DURATION_TOLERANCE_SECONDS = 1.0
DURATION_TOLERANCE_FRACTION = 0.02

# Identical pictures have an infinite PSNR; workers report them as this (worker.media.quality).
MAX_PSNR_DB = 100.0
# Written beside a measured output's files (the worker's worker.media.quality.QUALITY_FILE_NAME;
# server and worker share no module for one name).
QUALITY_FILE_NAME = "quality.json"


def _finite(value: float, low: float, high: float) -> bool:
    return math.isfinite(value) and low <= value <= high


def _text_problem(what: str, text: str) -> str | None:
    if len(text) > MAX_TEXT:
        return f"{what} is longer than {MAX_TEXT} characters"
    if any(ord(char) < 32 and char not in "\t\n" for char in text):
        return f"{what} contains control characters"
    return None


def progress_problem(request: worker_service_pb2.ReportProgressRequest) -> str | None:
    if not _finite(request.progress, 0.0, 100.0):
        return f"progress {request.progress!r} is not a number from 0 to 100"
    if request.stage not in RUNNING_STAGES:
        return f"stage {request.stage} is not a stage a running task can be in"
    return None


def error_problems(error: job_pb2.JobError) -> list[str]:
    problems = []
    if error.code not in WORKER_ERROR_CODES:
        problems.append(f"error code {error.code[:64]!r} is not one a worker may report")
    if problem := _text_problem("the error message", error.message):
        problems.append(problem)
    return problems


def input_info_problems(info: job_pb2.InputInfo) -> list[str]:
    """Probe results within physical bounds (the input's own faults are the worker's to
    report as INPUT_* errors, not to smuggle through as numbers)."""
    problems = []
    if not _finite(info.duration_seconds, 0.0, MAX_INPUT_SECONDS):
        problems.append(f"duration {info.duration_seconds!r} s is out of range")
    if info.size_bytes < 0 or info.bitrate < 0:
        problems.append("size and bitrate must not be negative")
    if len(info.streams) > MAX_STREAMS:
        problems.append(f"{len(info.streams)} streams is more than {MAX_STREAMS}")
    for index, stream in enumerate(info.streams[:MAX_STREAMS]):
        where = f"stream {index}"
        if not (0 <= stream.width <= MAX_DIMENSION and 0 <= stream.height <= MAX_DIMENSION):
            problems.append(f"{where} is {stream.width}x{stream.height}, beyond {MAX_DIMENSION}")
        if not _finite(stream.frame_rate, 0.0, MAX_FRAME_RATE):
            problems.append(f"{where} frame rate {stream.frame_rate!r} is out of range")
        if stream.rotation not in (0, 90, 180, 270):
            problems.append(f"{where} rotation {stream.rotation} is not 0, 90, 180 or 270")
        if stream.channels < 0 or stream.channels > 64 or stream.sample_rate < 0:
            problems.append(f"{where} has impossible audio parameters")
    named = [(s.kind, s.codec, s.language) for s in info.streams[:MAX_STREAMS]]
    texts = [info.container] + [text for names in named for text in names]
    if any(_text_problem("", text) for text in texts):
        problems.append("container or stream names are too long or contain control characters")
    return problems


def transcode_problems(
    result: worker_service_pb2.TranscodeResult,
    spec: job_pb2.OutputSpec,
    *,
    expected_seconds: float | None,
    qc_required: bool = False,
) -> list[str]:
    """Everything about a TRANSCODE result that can be judged without reading storage.

    `expected_seconds` is the output's duration from the spec and the probed input, or None
    when the server cannot know it (concatenated inputs it never probed): then only a
    ceiling applies. `qc_required`: the task reads its output back (a TRANSCODE), so a
    video or audio output must come with a quality-control report.
    """
    problems = []
    if not result.files:
        problems.append("no files were reported")
    if len(result.files) > MAX_FILES:
        problems.append(f"{len(result.files)} files is more than {MAX_FILES}")
    seen: set[str] = set()
    for file in result.files[:MAX_FILES]:
        if not safe_relative_path(file.path):
            problems.append(
                f"file {file.path[:100]!r} is not a plain relative path inside the output"
            )
        elif file.path in seen:
            problems.append(f"file {file.path!r} is reported twice")
        seen.add(file.path)
        if file.size_bytes <= 0:
            problems.append(f"file {file.path[:100]!r} has size {file.size_bytes}")
        if not (0 <= file.width <= MAX_DIMENSION and 0 <= file.height <= MAX_DIMENSION):
            problems.append(f"file {file.path[:100]!r} has impossible dimensions")
    if len(result.notes) > MAX_NOTES:
        problems.append(f"{len(result.notes)} notes is more than {MAX_NOTES}")
    for note in result.notes[:MAX_NOTES]:
        if problem := _text_problem("a note", note):
            problems.append(problem)
            break
    problems += _encoded_seconds_problems(result.encoded_seconds, spec, expected_seconds)
    problems += quality_problems(result, spec)
    problems += loudness_report_problems(
        result.loudness if result.HasField("loudness") else None, spec
    )
    if result.HasField("loudness") and spec.audio_tracks:
        problems.append("an output with audio tracks reports loudness per track")
    problems += track_loudness_problems(list(result.track_loudness), spec)
    problems += qc_report_problems(result, spec, required=qc_required)
    return problems


def quality_problems(
    result: worker_service_pb2.TranscodeResult, spec: job_pb2.OutputSpec
) -> list[str]:
    """Quality figures exactly when asked for: one per variant at most, each within what
    SSIM (0 to 1) and PSNR (0 to MAX_PSNR_DB dB) can be, with quality.json among the files."""
    if not spec.measure_quality:
        if result.quality:
            return ["quality figures were reported for an output that did not ask for them"]
        return []
    if not result.quality:
        return ["the output asked for quality measurement and no figures were reported"]
    problems = []
    if len(result.quality) > min(len(spec.video), MAX_VARIANTS):
        problems.append(f"{len(result.quality)} quality figures for {len(spec.video)} variants")
    seen: set[int] = set()
    for figure in result.quality[:MAX_VARIANTS]:
        where = f"quality of variant {figure.variant_index}"
        if not 0 <= figure.variant_index < len(spec.video):
            problems.append(f"{where}: the spec has no such variant")
        elif figure.variant_index in seen:
            problems.append(f"{where} is reported twice")
        seen.add(figure.variant_index)
        if not _finite(figure.ssim, 0.0, 1.0):
            problems.append(f"{where}: SSIM {figure.ssim!r} is not a number from 0 to 1")
        if not _finite(figure.psnr_db, 0.0, MAX_PSNR_DB):
            problems.append(
                f"{where}: PSNR {figure.psnr_db!r} dB is not a number from 0 to {MAX_PSNR_DB:g}"
            )
        if not (0 < figure.width <= MAX_DIMENSION and 0 < figure.height <= MAX_DIMENSION):
            problems.append(f"{where}: {figure.width}x{figure.height} is impossible")
    if all(file.path != QUALITY_FILE_NAME for file in result.files):
        problems.append(f"{QUALITY_FILE_NAME} is not among the reported files")
    return problems


def _encoded_seconds_problems(
    encoded: float, spec: job_pb2.OutputSpec, expected: float | None
) -> list[str]:
    if not _finite(encoded, 0.0, MAX_INPUT_SECONDS):
        return [f"encoded_seconds {encoded!r} is out of range"]
    if expected is None:
        return []
    slack = max(DURATION_TOLERANCE_SECONDS, expected * DURATION_TOLERANCE_FRACTION)
    if encoded > expected + slack:
        return [f"encoded_seconds {encoded:g} exceeds the output's {expected:g} s"]
    # Images cost per picture; their encoded time is a frame or a span, so no floor.
    if spec.type not in IMAGES and encoded < expected - slack:
        return [f"encoded_seconds {encoded:g} is far below the output's {expected:g} s"]
    return []


def stored_file_problems(
    result: worker_service_pb2.TranscodeResult | Sequence[job_pb2.OutputFile],
    stored_sizes: dict[str, int],
) -> list[str]:
    """Each reported file exists under the output's prefix with the reported size."""
    problems = []
    files = result.files if isinstance(result, worker_service_pb2.TranscodeResult) else result
    for file in files:
        size = stored_sizes.get(file.path)
        if size is None:
            problems.append(f"file {file.path!r} is not in the output's storage")
        elif size != file.size_bytes:
            problems.append(
                f"file {file.path!r} is {size} bytes in storage, reported {file.size_bytes}"
            )
        if len(problems) >= 5:
            break
    return problems


# --- Chunked outputs -----------------------------------------------------------------------------

# What the pieces of a chunked output may write, relative to the output's folder: segments
# in the rendition folders (HLS), or the one intermediate file of a progressive chunk.
_VIDEO_SEGMENT = re.compile(r"v([0-7])/seg_(\d{5})\.(ts|m4s)")
_AUDIO_SEGMENT = re.compile(r"audio/seg_(\d{5})\.(ts|m4s)")

# What the merge of an HLS output writes itself for a text track: its WebVTT segments.
_TEXT_SEGMENT = re.compile(r"text_(\d{1,2})/seg_\d{5}\.vtt")
_CODEC_STRING = re.compile(r"[A-Za-z0-9.]{0,64}")
_PROGRESSIVE_AUDIO = "chunks/audio.m4a"
MAX_SEGMENT_SECONDS = 120.0


def chunk_problems(
    result: worker_service_pb2.ChunkResult,
    spec: job_pb2.OutputSpec,
    chunk: worker_service_pb2.ChunkRange,
    *,
    audio: bool,
    output_seconds: float,
) -> list[str]:
    """A CHUNK or AUDIO result: its files are exactly where that piece may write (its own
    segment numbers, or its own intermediate file), its segment lists name those files with
    their sizes, and its encoded time is its range's."""
    as_transcode = worker_service_pb2.TranscodeResult(
        files=result.files, notes=result.notes, encoded_seconds=result.encoded_seconds
    )
    expected = output_seconds if audio else chunk.end_seconds - chunk.start_seconds
    problems = transcode_problems(as_transcode, spec, expected_seconds=expected)
    if result.HasField("loudness"):
        # Only the AUDIO piece normalizes; a video chunk has no audio to measure.
        problems += (
            loudness_report_problems(result.loudness, spec)
            if audio
            else ["a video chunk reported loudness figures"]
        )
    adaptive = spec.type in ADAPTIVE
    fmp4 = has_fmp4_segments(spec)
    segment_seconds = spec.segments.duration_seconds or 6.0
    for file in result.files[:MAX_FILES]:
        if not _piece_may_write(file.path, spec, chunk, audio=audio, adaptive=adaptive):
            problems.append(f"file {file.path[:100]!r} is not one this piece may write")
            break
    if not result.renditions and adaptive:
        problems.append("an HLS, DASH or CMAF piece must report its renditions' segments")
    sizes = {file.path: file.size_bytes for file in result.files}
    for rendition in result.renditions[: MAX_VARIANTS + 1]:
        problems += fmp4_pieces.rendition_problems(
            rendition, fmp4=fmp4, stores_init=audio or chunk.index == 0, sizes=sizes
        )
        if not _CODEC_STRING.fullmatch(rendition.codec):
            problems.append(f"codec string {rendition.codec[:80]!r} is not an RFC 6381 string")
        if rendition.name != ("audio" if audio else rendition.name) or not re.fullmatch(
            r"v[0-7]|audio", rendition.name
        ):
            problems.append(f"rendition {rendition.name[:20]!r} is not one this piece makes")
        if not (0 <= rendition.width <= MAX_DIMENSION and 0 <= rendition.height <= MAX_DIMENSION):
            problems.append(f"rendition {rendition.name!r} has impossible dimensions")
        if not _finite(rendition.frame_rate, 0.0, MAX_FRAME_RATE):
            problems.append(f"rendition {rendition.name!r} has an impossible frame rate")
        for segment in rendition.segments:
            if sizes.get(segment.path) != segment.size_bytes:
                problems.append(f"segment {segment.path[:100]!r} is not a reported file")
                break
            if not _finite(
                segment.duration_seconds, 0.0, max(MAX_SEGMENT_SECONDS, 2 * segment_seconds)
            ):
                problems.append(f"segment {segment.path!r} has an impossible duration")
                break
    if len(result.renditions) > MAX_VARIANTS + 1:
        problems.append(f"{len(result.renditions)} renditions is more than {MAX_VARIANTS + 1}")
    if result.frame_count < 0:
        problems.append("frame_count must not be negative")
    return problems


def audio_so_far_problems(
    part: worker_service_pb2.RenditionPart, spec: job_pb2.OutputSpec
) -> list[str]:
    """The segments a running AUDIO piece of an adaptive output says it has stored: the audio
    rendition's, numbered from 0 without a gap, each with a size and a possible duration;
    fMP4 (fMP4 HLS, DASH, CMAF): with its init segment and contiguous decode times that agree
    with the durations, as a chunk reports them (fmp4_pieces)."""
    if spec.type not in ADAPTIVE:
        return ["only an HLS, DASH or CMAF output's audio is reported while it encodes"]
    problems = []
    if part.name != "audio":
        problems.append(f"rendition {part.name[:20]!r} is not the audio rendition")
    if not _CODEC_STRING.fullmatch(part.codec) or not part.codec:
        problems.append(f"codec string {part.codec[:80]!r} is not an RFC 6381 string")
    if part.width or part.height or part.frame_rate:
        problems.append("the audio rendition has no picture")
    if not part.segments or len(part.segments) > MAX_FILES:
        problems.append(f"{len(part.segments)} segments is not 1 to {MAX_FILES}")
    fmp4 = has_fmp4_segments(spec)
    extension = "m4s" if fmp4 else "ts"
    longest = max(MAX_SEGMENT_SECONDS, 2 * (spec.segments.duration_seconds or 6.0))
    for number, segment in enumerate(part.segments[:MAX_FILES]):
        if segment.path != f"audio/seg_{number:05d}.{extension}":
            problems.append(f"segment {segment.path[:100]!r} is not audio segment {number}")
            break
        if segment.size_bytes <= 0 or not _finite(segment.duration_seconds, 1e-3, longest):
            problems.append(f"segment {segment.path!r} has an impossible size or duration")
            break
    if not fmp4:
        if part.init_size_bytes:
            problems.append("MPEG-TS audio has no init segment")
        return problems + fmp4_pieces.rendition_problems(
            part, fmp4=False, stores_init=False, sizes={}
        )
    if problems:
        return problems
    if part.init_size_bytes <= 0:
        return [f"init segment {part.init_path[:100]!r} has size {part.init_size_bytes}"]
    # The init segment is stored with the first segments: it must be named with its size.
    return fmp4_pieces.rendition_problems(
        part, fmp4=True, stores_init=True, sizes={part.init_path: part.init_size_bytes}
    )


def _piece_may_write(
    path: str,
    spec: job_pb2.OutputSpec,
    chunk: worker_service_pb2.ChunkRange,
    *,
    audio: bool,
    adaptive: bool,
) -> bool:
    if not adaptive:
        return path == (_PROGRESSIVE_AUDIO if audio else f"chunks/chunk_{chunk.index:05d}.mp4")
    extension = "m4s" if has_fmp4_segments(spec) else "ts"
    # The output's one init segment per rendition is the first chunk's (and the audio's).
    first_piece = audio or chunk.index == 0
    if first_piece and has_fmp4_segments(spec):
        return fmp4_pieces.init_path_allowed(path, audio=audio, variants=len(spec.video)) or (
            _segment_may_be(path, spec, chunk, audio=audio, extension=extension)
        )
    return _segment_may_be(path, spec, chunk, audio=audio, extension=extension)


def _segment_may_be(
    path: str,
    spec: job_pb2.OutputSpec,
    chunk: worker_service_pb2.ChunkRange,
    *,
    audio: bool,
    extension: str,
) -> bool:
    if audio:
        found = _AUDIO_SEGMENT.fullmatch(path)
        return found is not None and found.group(2) == extension
    match = _VIDEO_SEGMENT.fullmatch(path)
    if match is None or int(match.group(1)) >= len(spec.video) or match.group(3) != extension:
        return False
    segment_seconds = spec.segments.duration_seconds or 6.0
    last = chunk.first_segment + math.ceil(
        (chunk.end_seconds - chunk.start_seconds) / segment_seconds + 1e-6
    )
    return chunk.first_segment <= int(match.group(2)) <= last


def _merge_writes(path: str, spec: job_pb2.OutputSpec) -> bool:
    """What a merge writes itself: playlists (HLS, CMAF), the MPD (DASH, CMAF), WebVTT."""
    if path == fmp4_pieces.MPD_NAME:
        return spec.type in (T.OUTPUT_TYPE_DASH, T.OUTPUT_TYPE_CMAF)
    if path.endswith(".m3u8"):
        return spec.type in (T.OUTPUT_TYPE_HLS, T.OUTPUT_TYPE_CMAF)
    return _text_segment(path, spec)


def _text_segment(path: str, spec: job_pb2.OutputSpec) -> bool:
    match = _TEXT_SEGMENT.fullmatch(path)
    return match is not None and int(match.group(1)) < len(spec.text_tracks)


def merge_problems(
    result: worker_service_pb2.TranscodeResult,
    spec: job_pb2.OutputSpec,
    plan: worker_service_pb2.MergePlan,
) -> list[str]:
    """A MERGE result names the output's final files: for HLS every segment the pieces made
    (MPEG-TS with audio: and each video segment's muxed copy) plus the playlists, for a
    progressive output the one joined file."""
    reported = {file.path for file in result.files}
    if result.HasField("loudness") and (
        not plan.audio.HasField("loudness") or result.loudness != plan.audio.loudness
    ):
        return ["the merge reports loudness figures its audio piece did not"]
    if spec.type in ADAPTIVE:
        pieces = [*plan.chunks, *([plan.audio] if plan.has_audio else [])]
        made = {file.path for piece in pieces for file in piece.files}
        if plan.has_audio and muxes_audio_into_variants(spec):
            # And each chunk's video segment with the audio muxed in (the pieces' own
            # segments stay, for players that started on the live playlists).
            made |= {muxed_segment_path(f.path) for chunk in plan.chunks for f in chunk.files}
        if missing := sorted(made - reported):
            return [f"the merge left out {len(missing)} segments, e.g. {missing[0]!r}"]
        extra = reported - made
        if any(not _merge_writes(path, spec) for path in extra):
            return ["the merge reports media files no chunk made"]
        return []
    if any(path.startswith("chunks/") for path in reported):
        return ["the merge reports the chunks' intermediate files"]
    return []
