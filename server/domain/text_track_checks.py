"""Text tracks of an output checked at Create (field paths) and against the probed input.

Sidecar URLs go through the input policy like input_url (scheme, file roots, literal private
addresses here; a host name's addresses by the worker's egress proxy when it fetches the
file). Stream tracks can only be judged once the input is probed: input_stream_problem says
why a job is REJECTED then.
"""

from __future__ import annotations

from kiln.v1 import job_pb2

from common.input_policy import InputPolicy, InputRefused
from common.languages import language_problem
from common.output_types import VIDEO, short_name
from common.text_tracks import (
    IMAGE_SUBTITLE_CODECS,
    MAX_NAME,
    MAX_TEXT_TRACKS,
    TEXT_SUBTITLE_CODECS,
    display_name,
    sidecar_format,
)
from common.track_streams import SUBTITLE, is_stream_track, stream_of_kind

F = job_pb2.TextTrackFormat
K = job_pb2.TextTrackKind
FORMATS = frozenset(F.values())
KINDS = frozenset(K.values())
MAX_URL = 8192
MAX_STREAM_INDEX = 1000


def check_text_tracks(
    path: str,
    output: job_pb2.OutputSpec,
    output_type: int,
    policy: InputPolicy,
    *,
    reads_an_origin: bool,
    bad,
) -> None:
    """Every problem of output.text_tracks; output_type is 0 when a saved preset says it."""
    tracks = output.text_tracks
    if not tracks:
        return
    if len(tracks) > MAX_TEXT_TRACKS:
        bad(f"{path}.text_tracks", f"at most {MAX_TEXT_TRACKS} text tracks, got {len(tracks)}")
        return
    if output.HasField("custom"):
        bad(f"{path}.text_tracks", "custom commands say their streams themselves")
    elif output_type and output_type not in VIDEO:
        bad(
            f"{path}.text_tracks",
            f"text tracks go with video outputs (MP4, MOV, MKV, WEBM, HLS, DASH, CMAF), "
            f"not {short_name(output_type)}",
        )
    if sum(track.default for track in tracks) > 1:
        bad(f"{path}.text_tracks", "at most one track may be the default")
    if sum(track.burn_in for track in tracks) > 1:
        bad(f"{path}.text_tracks", "at most one track may be burned in")
    names: dict[str, int] = {}
    for index, track in enumerate(tracks):
        where = f"{path}.text_tracks[{index}]"
        _check_source(where, track, policy, reads_an_origin, bad)
        if problem := language_problem(track.language):
            bad(f"{where}.language", problem)
        if track.kind not in KINDS:
            bad(f"{where}.kind", f"unknown kind {track.kind}")
        elif track.forced and track.kind == K.TEXT_TRACK_KIND_CAPTIONS:
            bad(f"{where}.forced", "forced applies to SUBTITLES, not CAPTIONS")
        if track.burn_in and track.default:
            bad(f"{where}.default", "a burned-in track is part of the picture, not a track to pick")
        if len(track.name) > MAX_NAME:
            bad(f"{where}.name", f"at most {MAX_NAME} characters")
        elif '"' in track.name:
            bad(f"{where}.name", 'must not contain a double quote (")')
        elif language_problem(track.language) is None:
            name = display_name(track)
            if name in names:
                bad(
                    f"{where}.name",
                    f"{name!r} is also text_tracks[{names[name]}]'s name: give each its own",
                )
            names.setdefault(name, index)


def _check_source(
    where: str, track: job_pb2.TextTrack, policy: InputPolicy, reads_an_origin: bool, bad
) -> None:
    sources = [
        name
        for name, present in (
            ("url", bool(track.url)),
            ("origin_path", bool(track.origin_path)),
            ("stream_index", track.HasField("stream_index")),
            ("stream_language", bool(track.stream_language)),
        )
        if present
    ]
    if len(sources) != 1:
        bad(where, "set exactly one of url, origin_path, stream_index and stream_language")
        return
    if track.format not in FORMATS:
        bad(f"{where}.format", f"unknown format {track.format}")
        return
    if is_stream_track(track):
        if track.format:
            bad(f"{where}.format", "is for sidecar files: a stream's own codec is read")
        if track.HasField("stream_index") and not 0 <= track.stream_index < MAX_STREAM_INDEX:
            bad(f"{where}.stream_index", f"must be between 0 and {MAX_STREAM_INDEX - 1}")
        if track.stream_language and (problem := language_problem(track.stream_language)):
            bad(f"{where}.stream_language", problem)
        return
    if track.url:
        if len(track.url) > MAX_URL:
            bad(f"{where}.url", f"at most {MAX_URL} characters")
            return
        try:
            policy.check_syntax(track.url)
        except InputRefused as refused:
            bad(f"{where}.url", str(refused))
            return
    elif not reads_an_origin:
        bad(f"{where}.origin_path", "is read from the job's input origin: set input_origin_id")
        return
    if not sidecar_format(track, track.url or track.origin_path):
        field = "url" if track.url else "origin_path"
        bad(
            f"{where}.format",
            f"the {field} does not end in .vtt, .srt, .ass or .ssa: set the format",
        )


def input_stream_problem(
    info: job_pb2.InputInfo, specs: list[job_pb2.OutputSpec]
) -> job_pb2.JobError | None:
    """Why the probed input cannot give the text tracks the outputs take from its streams."""
    for output_index, spec in enumerate(specs):
        for index, track in enumerate(spec.text_tracks):
            where = f"outputs[{output_index}].text_tracks[{index}]"
            if spec.type and spec.type not in VIDEO:
                # Only a saved preset's type can get here (Create checks inline types): the
                # spec is at fault, not the input, so the job FAILS rather than being REJECTED.
                return job_pb2.JobError(
                    code="OUTPUT_SPEC_UNSUPPORTED",
                    message=f"{where}: the preset makes {short_name(spec.type)}, which carries "
                    "no text tracks",
                )
            if not is_stream_track(track):
                continue
            problem = _stream_problem(where, track, info)
            if problem is not None:
                return problem
    return None


def _stream_problem(
    where: str, track: job_pb2.TextTrack, info: job_pb2.InputInfo
) -> job_pb2.JobError | None:
    stream = stream_of_kind(where, track, info, SUBTITLE)
    if isinstance(stream, job_pb2.JobError):
        return stream
    if stream.codec in IMAGE_SUBTITLE_CODECS:
        return job_pb2.JobError(
            code="INPUT_IMAGE_SUBTITLES",
            message=f"{where}: stream {stream.index} is {stream.codec}, subtitles drawn as "
            "pictures, which cannot become a text track (nor be burned in by this server)",
        )
    if stream.codec not in TEXT_SUBTITLE_CODECS:
        return job_pb2.JobError(
            code="INPUT_UNSUPPORTED_CODEC",
            message=f"{where}: stream {stream.index} is {stream.codec or 'an unknown codec'}; "
            f"text tracks are read from {', '.join(sorted(TEXT_SUBTITLE_CODECS))}",
        )
    return None
