"""Audio tracks of an output checked at Create (field paths) and against the probed input.

Extra audio URLs go through the input policy like input_url (the worker's egress proxy judges
a host name's addresses when it reads the file). Stream tracks can only be judged once the
input is probed: input_audio_problem says why a job is REJECTED then.
"""

from __future__ import annotations

from kiln.v1 import job_pb2

from common.audio_tracks import (
    MAX_AUDIO_TRACKS,
    MAX_NAME,
    display_name,
    refusal,
)
from common.input_policy import InputPolicy, InputRefused
from common.languages import language_problem
from common.output_types import VIDEO, short_name
from common.track_streams import AUDIO, is_stream_track, stream_of_kind

from .output_validation import check_audio_settings

ROLES = frozenset(job_pb2.AudioTrackRole.values())
MAX_URL = 8192
MAX_STREAM_INDEX = 1000


def check_audio_tracks(
    path: str, output: job_pb2.OutputSpec, output_type: int, policy: InputPolicy, bad
) -> None:
    """Every problem of output.audio_tracks; output_type is 0 when a saved preset says it."""
    tracks = output.audio_tracks
    if not tracks:
        return
    if len(tracks) > MAX_AUDIO_TRACKS:
        bad(f"{path}.audio_tracks", f"at most {MAX_AUDIO_TRACKS} audio tracks, got {len(tracks)}")
        return
    if output.HasField("custom"):
        bad(f"{path}.audio_tracks", "custom commands say their streams themselves")
    elif output_type and output_type not in VIDEO:
        bad(
            f"{path}.audio_tracks",
            f"audio tracks go with video outputs (MP4, MOV, MKV, WEBM, HLS, DASH, CMAF), "
            f"not {short_name(output_type)}",
        )
    elif output_type and (problem := refusal(output)):
        bad(f"{path}.audio_tracks", problem)
    if sum(track.default for track in tracks) > 1:
        bad(f"{path}.audio_tracks", "at most one track may be the default")
    names: dict[str, int] = {}
    for index, track in enumerate(tracks):
        where = f"{path}.audio_tracks[{index}]"
        _check_source(where, track, policy, bad)
        if problem := language_problem(track.language):
            bad(f"{where}.language", problem)
        if track.role not in ROLES:
            bad(f"{where}.role", f"unknown role {track.role}")
        if output_type:
            settings = job_pb2.AudioSpec(
                codec=track.codec, bitrate_kbps=track.bitrate_kbps, channels=track.channels
            )
            check_audio_settings(where, output_type, settings, bad)
        if len(track.name) > MAX_NAME:
            bad(f"{where}.name", f"at most {MAX_NAME} characters")
        elif '"' in track.name:
            bad(f"{where}.name", 'must not contain a double quote (")')
        elif language_problem(track.language) is None:
            name = display_name(track)
            if name in names:
                bad(
                    f"{where}.name",
                    f"{name!r} is also audio_tracks[{names[name]}]'s name: give each its own",
                )
            names.setdefault(name, index)


def _check_source(where: str, track: job_pb2.AudioTrack, policy: InputPolicy, bad) -> None:
    sources = [
        name
        for name, present in (
            ("url", bool(track.url)),
            ("stream_index", track.HasField("stream_index")),
            ("stream_language", bool(track.stream_language)),
        )
        if present
    ]
    if len(sources) != 1:
        bad(where, "set exactly one of url, stream_index and stream_language")
        return
    if track.HasField("stream_index") and not 0 <= track.stream_index < MAX_STREAM_INDEX:
        bad(f"{where}.stream_index", f"must be between 0 and {MAX_STREAM_INDEX - 1}")
    if track.stream_language and (problem := language_problem(track.stream_language)):
        bad(f"{where}.stream_language", problem)
    if track.url:
        if len(track.url) > MAX_URL:
            bad(f"{where}.url", f"at most {MAX_URL} characters")
            return
        try:
            policy.check_syntax(track.url)
        except InputRefused as refused:
            bad(f"{where}.url", str(refused))


def input_audio_problem(
    info: job_pb2.InputInfo, specs: list[job_pb2.OutputSpec]
) -> job_pb2.JobError | None:
    """Why the probed input cannot give the audio tracks the outputs take from its streams."""
    for output_index, spec in enumerate(specs):
        if not spec.audio_tracks:
            continue
        where = f"outputs[{output_index}].audio_tracks"
        if spec.type and (spec.type not in VIDEO or refusal(spec)):
            # Only a saved preset's settings get here (Create checks inline ones): the spec is
            # at fault, not the input, so the job FAILS rather than being REJECTED.
            why = refusal(spec) or f"{short_name(spec.type)} carries no audio tracks"
            return job_pb2.JobError(
                code="OUTPUT_SPEC_UNSUPPORTED", message=f"{where}: with the preset, {why}"
            )
        for index, track in enumerate(spec.audio_tracks):
            if is_stream_track(track):
                problem = _stream_problem(f"{where}[{index}]", track, info)
                if problem is not None:
                    return problem
    return None


def _stream_problem(
    where: str, track: job_pb2.AudioTrack, info: job_pb2.InputInfo
) -> job_pb2.JobError | None:
    found = stream_of_kind(where, track, info, AUDIO)
    return found if isinstance(found, job_pb2.JobError) else None
