"""An output's audio tracks chosen before its encode: the input's streams judged again, each
extra audio file located through the task's input policy and proxy and probed.

The worker re-checks what the server checked at Create and after probing (count, languages,
names, one default, the stream being audio); a file without an audio stream fails the output
with AUDIO_TRACK_INVALID before any video is encoded. With audio.loudness each track gets its
own first pass (worker.media.loudness), measured as the encode will take it.
"""

from __future__ import annotations

import dataclasses

from kiln.v1 import job_pb2

from common.audio_tracks import (
    MAX_AUDIO_TRACKS,
    default_position,
    display_name,
    role_of,
)
from common.languages import language_problem
from common.loudness import wants_loudness
from common.track_streams import choose_stream, is_stream_track

from ..media.audio_tracks import PreparedAudio
from ..media.errors import AUDIO_TRACK_INVALID, MediaError, OutputSpecError
from ..media.geometry import default_stream
from ..media.loudness import MEASURE_LOG_NAME, run_first_pass, stream_first_pass, target_of
from .run import TaskRun


async def prepare_audio_tracks(
    run: TaskRun, location: str, spec: job_pb2.OutputSpec, notes: list[str]
) -> list[PreparedAudio]:
    """The spec's audio tracks, each with its stream (and its loudness first pass when asked);
    `location` is where FFmpeg reads the job's input."""
    tracks = spec.audio_tracks
    if not tracks:
        return []
    if len(tracks) > MAX_AUDIO_TRACKS:
        raise OutputSpecError(f"at most {MAX_AUDIO_TRACKS} audio tracks")
    if sum(track.default for track in tracks) > 1:
        raise OutputSpecError("at most one audio track may be the default")
    if spec.audio.disabled:
        raise OutputSpecError("audio tracks go without audio.disabled")
    first = default_position(tracks)
    prepared = []
    for position, track in enumerate(tracks):
        what = f"audio_tracks[{position}]"
        if problem := language_problem(track.language):
            raise OutputSpecError(f"{what}.language {problem}")
        if '"' in track.name:
            raise OutputSpecError(f"{what}.name must not contain a double quote")
        extra: str | None = None
        if is_stream_track(track):
            stream = choose_stream(track, run.task.input_info, "audio")
            if stream is None or stream.kind != "audio":
                # The server judged this after probing; this worker will not guess another.
                raise OutputSpecError(f"{what}: the input has no such audio stream")
        else:
            extra, _ = await run.locate(
                track.url, run.scratch / f"audio-{position}", known_ranges=None
            )
            stream = default_stream(await run.probe(extra), "audio")
            if stream is None:
                raise MediaError(AUDIO_TRACK_INVALID, f"{what}: the file has no audio stream")
        settings = job_pb2.AudioSpec()
        settings.CopyFrom(spec.audio)
        settings.codec = track.codec or settings.codec
        settings.bitrate_kbps = track.bitrate_kbps or settings.bitrate_kbps
        settings.channels = track.channels or settings.channels
        prepared.append(
            PreparedAudio(
                position=position,
                location=extra,
                stream=stream,
                language=track.language,
                name=display_name(track),
                default=position == first,
                role=role_of(track, position == first),
                settings=settings,
            )
        )
    if not wants_loudness(spec):
        return prepared
    return [await _measured(run, location, spec, track, notes) for track in prepared]


async def _measured(
    run: TaskRun, location: str, spec: job_pb2.OutputSpec, track: PreparedAudio, notes: list[str]
) -> PreparedAudio:
    target = target_of(spec)
    info = run.task.input_info
    argv = stream_first_pass(
        track.location or location, track.stream, track.settings, spec, info, target
    )
    second = await run_first_pass(
        argv,
        spec=spec,
        info=info,
        target=target,
        log_path=run.scratch / "loudness" / f"{track.position}-{MEASURE_LOG_NAME}",
        access=run.inputs.access,
        cancel_event=run.stop,
        notes=notes,
        what=f"audio_tracks[{track.position}]",
    )
    return dataclasses.replace(track, loudness=second)
