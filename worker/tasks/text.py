"""An output's text tracks read before its encode: sidecars fetched (at most 10 MB, through the
task's input policy and proxy), the input's subtitle streams extracted, every track turned into
cues on the output's timeline (clipped like the video).

A sidecar that is no subtitle file of its format, or whose times are broken, fails the output
with TEXT_TRACK_INVALID before any video is encoded; the worker checks again what the server
checked at Create and after probing (languages, names, the stream's codec).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from kiln.v1 import job_pb2

from common.languages import language_problem
from common.text_tracks import (
    MAX_SIDECAR_BYTES,
    MAX_TEXT_TRACKS,
    TEXT_SUBTITLE_CODECS,
    display_name,
    sidecar_format,
)
from common.track_streams import choose_stream, is_stream_track

from ..media.cues import Cue, clip_cues, decode_text, parse_srt, parse_webvtt
from ..media.errors import (
    ENCODE_FAILED,
    TEXT_TRACK_INVALID,
    TEXT_TRACK_TOO_LARGE,
    MediaError,
    OutputSpecError,
)
from ..media.ffmpeg import run_ffmpeg
from ..media.plan import COMMON_FLAGS
from ..media.text_tracks import PreparedTrack, carried, write_track_vtt
from ..media.timing import clip_window
from .run import TaskRun

F = job_pb2.TextTrackFormat
K = job_pb2.TextTrackKind


async def prepare_text_tracks(
    run: TaskRun, location: str, spec: job_pb2.OutputSpec, info: job_pb2.InputInfo
) -> list[PreparedTrack]:
    if not spec.text_tracks:
        return []
    if len(spec.text_tracks) > MAX_TEXT_TRACKS:
        raise OutputSpecError(f"at most {MAX_TEXT_TRACKS} text tracks")
    if sum(track.burn_in for track in spec.text_tracks) > 1:
        raise OutputSpecError("at most one text track may be burned in")
    work = run.scratch / "text"
    work.mkdir(parents=True, exist_ok=True)
    start, duration = clip_window(spec.clip, info.duration_seconds)
    prepared = []
    for position, track in enumerate(spec.text_tracks):
        what = f"text_tracks[{position}]"
        if problem := language_problem(track.language):
            raise OutputSpecError(f"{what}.language {problem}")
        if '"' in track.name:
            raise OutputSpecError(f"{what}.name must not contain a double quote")
        if is_stream_track(track):
            cues = await _stream_cues(run, location, track, info, work / f"{position}.srt", what)
        else:
            cues = await _sidecar_cues(run, track, work, position, what)
        prepared.append(
            PreparedTrack(
                position=position,
                language=track.language,
                name=display_name(track),
                default=track.default,
                forced=track.forced,
                captions=track.kind == K.TEXT_TRACK_KIND_CAPTIONS,
                cues=clip_cues(cues, start, duration),
                vtt=work / f"{position}.vtt",
                burn_in=track.burn_in,
            )
        )
    for each in prepared:
        await asyncio.to_thread(write_track_vtt, each)
    return prepared


async def read_merged_text_tracks(run: TaskRun) -> list[PreparedTrack]:
    """A chunked output's carried text tracks, read once by its merge: the cues do not depend
    on where the video was cut. The input is located only for a track read from one of its
    streams (a sidecar needs nothing of it)."""
    task = run.task
    if not task.output_spec.text_tracks:
        return []

    async def read() -> list[PreparedTrack]:
        location = ""
        if any(is_stream_track(track) for track in task.output_spec.text_tracks):
            location, _ = await run.locate(
                task.input_url,
                run.scratch / "input-0",
                known_ranges=task.input_info.supports_byte_ranges or None,
            )
        return await prepare_text_tracks(run, location, task.output_spec, task.input_info)

    return carried(await run.inputs.guarded(read()))


async def _sidecar_cues(
    run: TaskRun, track: job_pb2.TextTrack, work: Path, position: int, what: str
) -> list[Cue]:
    if not track.url:
        raise OutputSpecError(f"{what} names no file (an origin path the server did not sign)")
    # Called inside the transcode's guarded read: a refusal by the proxy stops this too.
    data = await run.inputs.fetch_sidecar(track.url, work / str(position), MAX_SIDECAR_BYTES)
    if data is None:
        raise MediaError(
            TEXT_TRACK_TOO_LARGE,
            f"{what}: the file is larger than {MAX_SIDECAR_BYTES // (1024 * 1024)} MB",
        )
    text = decode_text(data, what)
    kind = sidecar_format(track, track.url)
    if kind == F.TEXT_TRACK_FORMAT_WEBVTT:
        return parse_webvtt(text, what)
    if kind == F.TEXT_TRACK_FORMAT_SRT:
        return parse_srt(text, what)
    if kind == F.TEXT_TRACK_FORMAT_ASS:
        if not text.lstrip().startswith("[Script Info]"):
            raise MediaError(TEXT_TRACK_INVALID, f"{what}: is not ASS/SSA ([Script Info] first)")
        source = work / f"{position}.ass"
        await asyncio.to_thread(source.write_text, text, "utf-8")
        return await _converted_cues(run, str(source), "0", work / f"{position}.srt", what)
    raise OutputSpecError(f"{what}: the format is not given and not in the file name")


async def _stream_cues(
    run: TaskRun,
    location: str,
    track: job_pb2.TextTrack,
    info: job_pb2.InputInfo,
    target: Path,
    what: str,
) -> list[Cue]:
    stream = choose_stream(track, info, "subtitle")
    if stream is None or stream.kind != "subtitle" or stream.codec not in TEXT_SUBTITLE_CODECS:
        # The server judged this after probing; this worker will not guess another stream.
        raise OutputSpecError(f"{what}: the input has no text subtitle stream for this track")
    return await _converted_cues(run, location, str(stream.index), target, what)


async def _converted_cues(
    run: TaskRun, source: str, stream: str, target: Path, what: str
) -> list[Cue]:
    """One subtitle stream as SubRip through FFmpeg (its decoders read mov_text, ASS and
    WebVTT), then read like a SubRip file whose cues may overlap."""
    argv = [
        "ffmpeg",
        *COMMON_FLAGS,
        "-i",
        source,
        "-map",
        f"0:{stream}",
        "-c:s",
        "srt",
        "-f",
        "srt",
        str(target),
    ]
    try:
        await run_ffmpeg(
            run.inputs.access.apply(argv),
            duration=0.0,
            on_progress=None,
            cancel_event=run.stop,
            env=run.inputs.access.environment(),
            remove_on_failure=[target],
        )
    except MediaError as error:
        if error.code != ENCODE_FAILED:
            raise
        raise MediaError(
            TEXT_TRACK_INVALID, f"{what}: FFmpeg cannot read it: {error.message}"
        ) from None
    text = await asyncio.to_thread(target.read_text, "utf-8", errors="replace")
    if not text.strip():
        return []  # a stream without cues: an empty track, as the source has it
    return parse_srt(text, what, converted=True)
