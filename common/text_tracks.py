"""What both sides agree on about text tracks: limits, formats by extension, subtitle codecs.

The server checks a request against these at Create and a probed input after probing; the
worker checks what it runs against the same lists.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from urllib.parse import urlsplit

from kiln.v1 import job_pb2

from common.languages import language_of

F = job_pb2.TextTrackFormat

MAX_TEXT_TRACKS = 16
# A sidecar file larger than this is refused (TEXT_TRACK_TOO_LARGE): a two-hour film's
# subtitles are ~100 kB, so 10 MB leaves room for any real file and none for a disguised video.
MAX_SIDECAR_BYTES = 10 * 1024 * 1024
MAX_NAME = 64

FORMAT_BY_EXTENSION = {
    ".vtt": F.TEXT_TRACK_FORMAT_WEBVTT,
    ".webvtt": F.TEXT_TRACK_FORMAT_WEBVTT,
    ".srt": F.TEXT_TRACK_FORMAT_SRT,
    ".ass": F.TEXT_TRACK_FORMAT_ASS,
    ".ssa": F.TEXT_TRACK_FORMAT_ASS,
}

# Subtitle codecs (ffprobe's names) whose cues are text, which the worker converts to WebVTT.
TEXT_SUBTITLE_CODECS = frozenset({"mov_text", "subrip", "srt", "ass", "ssa", "webvtt", "text"})
# Subtitles drawn as pictures: they cannot become text tracks.
IMAGE_SUBTITLE_CODECS = frozenset(
    {"hdmv_pgs_subtitle", "dvb_subtitle", "dvd_subtitle", "xsub", "dvb_teletext"}
)


def sidecar_format(track: job_pb2.TextTrack, location: str) -> int:
    """The track's format: as given, else from the extension of `location`'s path (a URL or
    an origin path); UNSPECIFIED when neither says."""
    if track.format:
        return track.format
    path = urlsplit(location).path if "://" in location else location
    return FORMAT_BY_EXTENSION.get(PurePosixPath(path).suffix.lower(), 0)


def display_name(track: job_pb2.TextTrack) -> str:
    """What players list a track (with a valid language) as: its name, else its language's
    English name, plus "(forced)" or "(CC)" so that tracks of one language keep apart."""
    if track.name:
        return track.name
    name = language_of(track.language).english_name
    if track.forced:
        return f"{name} (forced)"
    if track.kind == job_pb2.TEXT_TRACK_KIND_CAPTIONS:
        return f"{name} (CC)"
    return name
