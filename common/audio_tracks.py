"""What both sides agree on about audio tracks: the limit, names, roles and which stream.

The server checks a request against these at Create and a probed input after probing; the
worker checks what it runs against the same rules.
"""

from __future__ import annotations

from kiln.v1 import job_pb2

from common.languages import language_of

R = job_pb2.AudioTrackRole

MAX_AUDIO_TRACKS = 8
MAX_NAME = 64


def display_name(track: job_pb2.AudioTrack) -> str:
    """What players list a track (with a valid language) as: its name, else its language's
    English name, plus "(description)" for audio description."""
    if track.name:
        return track.name
    name = language_of(track.language).english_name
    if track.role == R.AUDIO_TRACK_ROLE_DESCRIPTION:
        return f"{name} (description)"
    return name


def default_position(tracks) -> int:
    """The track players pick first: the one marked default, else the first."""
    return next((i for i, track in enumerate(tracks) if track.default), 0)


def role_of(track: job_pb2.AudioTrack, is_default: bool) -> int:
    if track.role:
        return track.role
    return R.AUDIO_TRACK_ROLE_MAIN if is_default else R.AUDIO_TRACK_ROLE_ALTERNATE


def refusal(spec: job_pb2.OutputSpec) -> str | None:
    """Why this video output cannot carry audio tracks (None: it can). Every video type can,
    MPEG-TS HLS included (its default track muxed into the variants, the others alternate
    renditions: worker.media.audio_tracks)."""
    if spec.audio.disabled:
        return "audio is disabled"
    return None
