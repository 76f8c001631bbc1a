"""Reading an input with ffprobe into InputInfo, refusing inputs no output could be made from."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import signal
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from kiln.v1 import job_pb2

from worker.media.errors import (
    INPUT_CORRUPT,
    INPUT_DIMENSIONS_TOO_LARGE,
    INPUT_EMPTY,
    INPUT_NO_AUDIO,
    INPUT_NO_VIDEO,
    INPUT_NOT_MEDIA,
    INPUT_UNREADABLE,
    INPUT_UNSUPPORTED_CODEC,
    INPUT_ZERO_DURATION,
    MediaError,
    public_message,
)
from worker.media.input_access import InputAccess

MAX_DIMENSION = 8192
# Without a proxy, http(s) inputs are still limited to the network protocols, but reach the
# origin directly: only for tests and tools that read local files.
LOCAL_ONLY = InputAccess()

# Top-level ISO BMFF (MP4/MOV/M4A/3GP) box types that can open a file. Used to tell a cut-off
# MP4 from a file that merely carries an .mp4 name.
_ISO_BMFF_LEADING_BOXES = frozenset({b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot"})

# ffprobe stderr fragments, checked in order, mapped to (code, retryable, what we tell the user).
#
# "moov atom not found" is special-cased in _classify_failure: the mov demuxer says it both for a
# real MP4 whose index is missing (a truncated upload: the moov box is written last unless
# +faststart) and for any non-media file whose name ends in .mp4/.mov, because ffprobe falls
# back to the extension when no demuxer recognises the bytes. Sniffing the first box tells them
# apart: ISO BMFF boxes → INPUT_CORRUPT, anything else → INPUT_NOT_MEDIA.
#
# "Invalid data found when processing input" is what ffprobe prints when no demuxer accepts the
# data at all, so it means INPUT_NOT_MEDIA. (For the moov case it follows the moov line, which
# is why the moov line is checked first.)
#
# "End of file" / "partial file" come from demuxers that recognised the header but ran out of
# bytes while reading it: the file is media, but cut short → INPUT_CORRUPT.
_STDERR_CLASSIFICATION: tuple[tuple[str, str, bool, str], ...] = (
    ("no such file or directory", INPUT_UNREADABLE, False, "the input does not exist"),
    ("permission denied", INPUT_UNREADABLE, False, "the input cannot be read"),
    ("is a directory", INPUT_UNREADABLE, False, "the input is a directory"),
    ("server returned 5", INPUT_UNREADABLE, True, "the input's server failed"),
    ("server returned", INPUT_UNREADABLE, False, "the input's server refused the request"),
    ("http error", INPUT_UNREADABLE, False, "the input's server refused the request"),
    ("connection refused", INPUT_UNREADABLE, True, "the input's server refused the connection"),
    ("connection timed out", INPUT_UNREADABLE, True, "the input's server did not answer"),
    ("network is unreachable", INPUT_UNREADABLE, True, "the input's server is unreachable"),
    ("failed to resolve", INPUT_UNREADABLE, True, "the input's host name does not resolve"),
    ("name or service not known", INPUT_UNREADABLE, True, "the input's host does not resolve"),
    ("invalid data found when processing input", INPUT_NOT_MEDIA, False, "not a media file"),
    ("end of file", INPUT_CORRUPT, False, "the input is truncated"),
    ("partial file", INPUT_CORRUPT, False, "the input is truncated"),
)

# Demuxers that accept nearly anything and so would let a text file through as "media".
_CATCH_ALL_FORMATS = frozenset({"tty", "data", "bin"})


def is_remote(url: str) -> bool:
    return urlsplit(url).scheme in {"http", "https"}


def _display_name(url: str) -> str:
    """What an error message may say about the input: its file name, never a server path or a
    signed query string."""
    path = urlsplit(url).path if is_remote(url) else url
    return Path(path).name or "input"


async def run_ffprobe_json(
    target: str,
    *,
    timeout: float,
    ffprobe: str = "ffprobe",
    extra_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> tuple[int, dict[str, Any], str]:
    """Runs ffprobe on `target` and returns (exit code, parsed JSON, stderr text).

    extra_args go before the target, e.g. ("-show_data",) for codec extradata, or the input
    options of an InputAccess.

    The process runs in its own session so that a timeout or a cancelled caller can kill it
    (and anything it spawned) without leaving it behind.
    """
    process = await asyncio.create_subprocess_exec(
        ffprobe,
        "-v",
        "error",
        "-print_format",
        "json",
        "-show_format",
        "-show_streams",
        *extra_args,
        "--",
        target,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
        env=env,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        await _kill(process)
        raise MediaError(
            INPUT_UNREADABLE,
            f"{_display_name(target)}: reading the input took longer than {timeout:g} s",
            retryable=True,
        ) from None
    except BaseException:
        await _kill(process)
        raise
    try:
        parsed = json.loads(stdout or b"{}")
    except json.JSONDecodeError:
        parsed = {}
    return process.returncode or 0, parsed, stderr.decode("utf-8", "replace")


async def _kill(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    # Shielded so that a cancelled caller still reaps the child instead of leaving a zombie.
    await asyncio.shield(process.wait())


async def probe(
    url: str, *, timeout: float = 60, access: InputAccess = LOCAL_ONLY
) -> job_pb2.InputInfo:
    """Probes a local path or an http(s) URL, reached the way `access` allows.

    Raises MediaError with INPUT_UNREADABLE, INPUT_EMPTY, INPUT_NOT_MEDIA, INPUT_CORRUPT,
    INPUT_ZERO_DURATION or INPUT_DIMENSIONS_TOO_LARGE. Whether the input has the streams an
    output needs is a separate question: see check_input_for_outputs.
    """
    name = _display_name(url)
    local = not is_remote(url)
    local_size = await asyncio.to_thread(_check_local_file, url, name) if local else 0

    returncode, parsed, stderr = await run_ffprobe_json(
        url, timeout=timeout, extra_args=access.options_for(url), env=access.environment()
    )
    if returncode != 0:
        raise _classify_failure(stderr, url, name)

    format_section: dict[str, Any] = parsed.get("format") or {}
    raw_streams: list[dict[str, Any]] = parsed.get("streams") or []
    container = str(format_section.get("format_name", ""))
    if not raw_streams or container in _CATCH_ALL_FORMATS:
        raise MediaError(INPUT_NOT_MEDIA, f"{name}: no audio or video streams found")

    # ffprobe reads durations and sizes from the index, so an MP4 with its index up front
    # (+faststart) and its data cut off still probes cleanly; the box sizes give it away.
    if local and await asyncio.to_thread(_iso_bmff_is_truncated, Path(url)):
        raise MediaError(INPUT_CORRUPT, f"{name}: the file is truncated")

    info = job_pb2.InputInfo(
        container=container,
        size_bytes=ffprobe_int(format_section.get("size")) or local_size,
        bitrate=ffprobe_int(format_section.get("bit_rate")),
        streams=[_stream_info(raw) for raw in raw_streams],
    )
    info.duration_seconds = ffprobe_float(format_section.get("duration")) or max(
        (ffprobe_float(raw.get("duration")) for raw in raw_streams), default=0.0
    )
    if info.duration_seconds <= 0:
        raise MediaError(INPUT_ZERO_DURATION, f"{name}: the input has no duration")

    for stream in info.streams:
        if stream.kind == "video" and max(stream.width, stream.height) > MAX_DIMENSION:
            raise MediaError(
                INPUT_DIMENSIONS_TOO_LARGE,
                f"{name}: video is {stream.width}x{stream.height}; "
                f"at most {MAX_DIMENSION} pixels on either side are supported",
            )
    return info


def check_input_for_outputs(
    info: job_pb2.InputInfo, wants_video: bool, *, wants_audio: bool = False
) -> None:
    """Refuses an input that lacks what the requested outputs need.

    INPUT_NO_VIDEO when a video (or image) output is asked of an input without a video stream;
    INPUT_UNSUPPORTED_CODEC when the only video streams are ones ffmpeg cannot decode (ffprobe
    reports no codec name for those); INPUT_NO_AUDIO when only audio outputs are asked
    (`wants_audio` and not `wants_video`) of an input without audio.
    """
    if wants_audio and not wants_video and not any(s.kind == "audio" for s in info.streams):
        raise MediaError(INPUT_NO_AUDIO, "the input has no audio stream")
    if not wants_video:
        return
    video_streams = [stream for stream in info.streams if stream.kind == "video"]
    if not video_streams:
        raise MediaError(INPUT_NO_VIDEO, "the input has no video stream")
    if not any(stream.codec for stream in video_streams):
        raise MediaError(INPUT_UNSUPPORTED_CODEC, "the input's video codec is not supported")


def _check_local_file(path: str, name: str) -> int:
    """Checks a local input is a readable, non-empty regular file; returns its size."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        raise MediaError(INPUT_UNREADABLE, f"{name}: the input does not exist") from None
    except OSError as error:
        raise MediaError(
            INPUT_UNREADABLE, f"{name}: the input cannot be read ({error.strerror})"
        ) from None
    if not Path(path).is_file():
        raise MediaError(INPUT_UNREADABLE, f"{name}: the input is not a regular file")
    if not os.access(path, os.R_OK):
        raise MediaError(INPUT_UNREADABLE, f"{name}: the input cannot be read")
    if stat.st_size == 0:
        raise MediaError(INPUT_EMPTY, f"{name}: the input is empty (0 bytes)")
    return stat.st_size


def _classify_failure(stderr: str, url: str, name: str) -> MediaError:
    lowered = stderr.lower()
    if "moov atom not found" in lowered:
        # Remote inputs are not sniffed (that would mean a second request); an http(s) origin
        # serving something with an .mp4 name that has no index is most likely a cut-off MP4.
        if is_remote(url) or _starts_with_iso_bmff_box(Path(url)):
            return MediaError(INPUT_CORRUPT, f"{name}: the MP4/MOV index (moov) is missing")
        return MediaError(INPUT_NOT_MEDIA, f"{name}: not a media file")
    for fragment, code, retryable, explanation in _STDERR_CLASSIFICATION:
        if fragment in lowered:
            return MediaError(code, f"{name}: {explanation}", retryable=retryable)
    last_line = _last_meaningful_line(stderr).replace(url, name)
    return MediaError(INPUT_NOT_MEDIA, public_message(last_line) or f"{name}: not a media file")


def _last_meaningful_line(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _starts_with_iso_bmff_box(path: Path) -> bool:
    try:
        with path.open("rb") as file:
            header = file.read(8)
    except OSError:
        return False
    return len(header) == 8 and header[4:8] in _ISO_BMFF_LEADING_BOXES


def _iso_bmff_is_truncated(path: Path) -> bool:
    """Walks the top-level boxes of an ISO BMFF file; a box reaching past the end means the file
    was cut off. Files that are not ISO BMFF are not judged here."""
    if not _starts_with_iso_bmff_box(path):
        return False
    file_size = path.stat().st_size
    offset = 0
    with path.open("rb") as file:
        while offset < file_size:
            file.seek(offset)
            header = file.read(16)
            if len(header) < 8:
                return True
            box_size = int.from_bytes(header[0:4], "big")
            if box_size == 1:
                if len(header) < 16:
                    return True
                box_size = int.from_bytes(header[8:16], "big")
            elif box_size == 0:
                # Size 0 means "to the end of the file", which holds by definition.
                return False
            if box_size < 8:
                return True
            offset += box_size
    return offset > file_size


def _stream_info(raw: dict[str, Any]) -> job_pb2.StreamInfo:
    disposition: dict[str, Any] = raw.get("disposition") or {}
    kind = str(raw.get("codec_type", "data"))
    if kind == "video" and disposition.get("attached_pic"):
        # Cover art in MP3/M4A shows up as a one-frame video stream; it must not count as the
        # video of the input (nor satisfy a video output).
        kind = "attachment"
    return job_pb2.StreamInfo(
        index=ffprobe_int(raw.get("index")),
        kind=kind,
        codec=str(raw.get("codec_name", "")),
        width=ffprobe_int(raw.get("width")),
        height=ffprobe_int(raw.get("height")),
        frame_rate=_parse_rate(raw.get("avg_frame_rate")),
        rotation=_rotation(raw),
        channels=ffprobe_int(raw.get("channels")),
        sample_rate=ffprobe_int(raw.get("sample_rate")),
        bitrate=ffprobe_int(raw.get("bit_rate")),
        pixel_format=str(raw.get("pix_fmt", "")),
        is_default=bool(disposition.get("default")),
        variable_frame_rate=kind == "video" and _uneven_frames(raw),
        language=str((raw.get("tags") or {}).get("language", ""))[:35],
    )


def _uneven_frames(raw: dict[str, Any]) -> bool:
    """Whether frames are not evenly spaced: the stream's real frame rate (the base rate
    every timestamp is a multiple of) and its average differ. Such input (VFR, or timestamps
    rounded to a coarse time base) is never cut into chunks."""
    real = _parse_rate(raw.get("r_frame_rate"))
    average = _parse_rate(raw.get("avg_frame_rate"))
    if real <= 0 or average <= 0:
        return True
    return abs(real - average) > average * 1e-3


def _rotation(raw: dict[str, Any]) -> int:
    """Display rotation as one of 0/90/180/270.

    The display matrix (side data) wins over the legacy `rotate` tag. ffprobe may report it
    negative (-90 for a quarter turn the other way), so it is normalised to a positive angle.
    """
    degrees: float | None = None
    for side_data in raw.get("side_data_list") or []:
        if "rotation" in side_data:
            degrees = ffprobe_float(side_data["rotation"])
            break
    if degrees is None:
        degrees = ffprobe_float((raw.get("tags") or {}).get("rotate"))
    return (round(degrees / 90) * 90) % 360


def _parse_rate(value: object) -> float:
    numerator, _, denominator = str(value or "").partition("/")
    try:
        top = float(numerator)
        bottom = float(denominator) if denominator else 1.0
    except ValueError:
        return 0.0
    return top / bottom if bottom else 0.0


def ffprobe_int(value: object) -> int:
    """A number from ffprobe JSON, which writes most of them as strings and omits unknown ones."""
    try:
        return int(float(str(value)))
    except (ValueError, OverflowError):
        return 0


def ffprobe_float(value: object) -> float:
    try:
        number = float(str(value))
    except ValueError:
        return 0.0
    return number if math.isfinite(number) else 0.0
