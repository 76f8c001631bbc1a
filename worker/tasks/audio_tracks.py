"""An output's audio tracks chosen before its encode: the input's streams judged again, each
extra audio file located through the task's input policy and proxy and probed.

The worker re-checks what the server checked at Create and after probing (count, languages,
names, one default, the stream being audio); a file without an audio stream fails the output
with AUDIO_TRACK_INVALID before any video is encoded.
"""

from __future__ import annotations

from kiln.v1 import job_pb2

from common.audio_tracks import (
    MAX_AUDIO_TRACKS,
    choose_stream,
    default_position,
    display_name,
    is_stream_track,
    role_of,
)
from common.languages import language_problem, same_language

from ..media.audio_tracks import PreparedAudio
from ..media.errors import AUDIO_TRACK_INVALID, MediaError, OutputSpecError
from ..media.geometry import default_stream
from .run import TaskRun


async def prepare_audio_tracks(run: TaskRun, spec: job_pb2.OutputSpec) -> list[PreparedAudio]:
    tracks = spec.audio_tracks
    if not tracks:
        return []
    if len(tracks) > MAX_AUDIO_TRACKS:
        raise OutputSpecError(f"at most {MAX_AUDIO_TRACKS} audio tracks")
    if sum(track.default for track in tracks) > 1:
        raise OutputSpecError("at most one audio track may be the default")
    if spec.audio.disabled or spec.audio.HasField("loudness"):
        raise OutputSpecError("audio tracks go without audio.disabled and audio.loudness")
    first = default_position(tracks)
    prepared = []
    for position, track in enumerate(tracks):
        what = f"audio_tracks[{position}]"
        if problem := language_problem(track.language):
            raise OutputSpecError(f"{what}.language {problem}")
        if '"' in track.name:
            raise OutputSpecError(f"{what}.name must not contain a double quote")
        location: str | None = None
        if is_stream_track(track):
            stream = choose_stream(track, run.task.input_info, same_language)
            if stream is None or stream.kind != "audio":
                # The server judged this after probing; this worker will not guess another.
                raise OutputSpecError(f"{what}: the input has no such audio stream")
        else:
            location, _ = await run.locate(
                track.url, run.scratch / f"audio-{position}", known_ranges=None
            )
            stream = default_stream(await run.probe(location), "audio")
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
                location=location,
                stream=stream,
                language=track.language,
                name=display_name(track),
                default=position == first,
                role=role_of(track, position == first),
                settings=settings,
            )
        )
    return prepared
