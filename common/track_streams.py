"""Tracks taken from the input's own streams (an audio or a text track chosen by stream index
or by language): the one way both kinds of track find their stream, on the server and the
worker."""

from __future__ import annotations

from dataclasses import dataclass

from kiln.v1 import job_pb2

from common.languages import same_language

StreamTrack = job_pb2.AudioTrack | job_pb2.TextTrack


def is_stream_track(track: StreamTrack) -> bool:
    return track.HasField("stream_index") or bool(track.stream_language)


def choose_stream(
    track: StreamTrack, info: job_pb2.InputInfo, kind: str
) -> job_pb2.StreamInfo | None:
    """The input stream a stream track names: by index (of any kind, for the caller to judge),
    or the first stream of `kind` ("audio", "subtitle") in the track's language."""
    if track.HasField("stream_index"):
        return next((s for s in info.streams if s.index == track.stream_index), None)
    return next(
        (
            s
            for s in info.streams
            if s.kind == kind and same_language(s.language, track.stream_language)
        ),
        None,
    )


@dataclass(frozen=True)
class StreamKind:
    """How a kind of stream is named in the error of a track whose stream is missing."""

    kind: str  # StreamInfo.kind: "audio", "subtitle"
    streams: str  # "audio streams"
    one: str  # "an audio stream"
    name: str  # "audio": "stream 3 is video, not audio"
    code: str  # the job error's code


AUDIO = StreamKind(
    "audio", "audio streams", "an audio stream", "audio", "INPUT_AUDIO_STREAM_NOT_FOUND"
)
SUBTITLE = StreamKind(
    "subtitle", "subtitle streams", "a subtitle stream", "subtitles", "INPUT_TEXT_STREAM_NOT_FOUND"
)


def stream_of_kind(
    where: str, track: StreamTrack, info: job_pb2.InputInfo, of: StreamKind
) -> job_pb2.StreamInfo | job_pb2.JobError:
    """The probed stream a stream track names, or the job error (naming the streams the input
    has) when there is none of that kind."""
    stream = choose_stream(track, info, of.kind)
    candidates = [s for s in info.streams if s.kind == of.kind]
    found = ", ".join(f"{s.index} ({s.codec}, {s.language or 'no language'})" for s in candidates)
    found = f"its {of.streams}: {found}" if found else f"it has no {of.streams}"
    if stream is None:
        named = (
            f"stream {track.stream_index}"
            if track.HasField("stream_index")
            else f"{of.one} in {track.stream_language!r}"
        )
        return job_pb2.JobError(
            code=of.code, message=f"{where}: the input has no {named} ({found})"
        )
    if stream.kind != of.kind:
        return job_pb2.JobError(
            code=of.code,
            message=f"{where}: stream {stream.index} is {stream.kind}, not {of.name} ({found})",
        )
    return stream
