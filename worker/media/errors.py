"""The single exception type of the media layer, carrying a stable code for JobError."""

from __future__ import annotations

import re
from typing import Final

INPUT_UNREADABLE: Final = "INPUT_UNREADABLE"
INPUT_EMPTY: Final = "INPUT_EMPTY"
INPUT_NOT_MEDIA: Final = "INPUT_NOT_MEDIA"
INPUT_CORRUPT: Final = "INPUT_CORRUPT"
INPUT_NO_VIDEO: Final = "INPUT_NO_VIDEO"
# Not in the original list: an audio-only output (MP3/M4A/OPUS/WAV) of an input without audio.
INPUT_NO_AUDIO: Final = "INPUT_NO_AUDIO"
INPUT_ZERO_DURATION: Final = "INPUT_ZERO_DURATION"
INPUT_DIMENSIONS_TOO_LARGE: Final = "INPUT_DIMENSIONS_TOO_LARGE"
INPUT_UNSUPPORTED_CODEC: Final = "INPUT_UNSUPPORTED_CODEC"
ENCODE_FAILED: Final = "ENCODE_FAILED"
CANCELED: Final = "CANCELED"
# Not in the original list: a spec the command builders cannot make (H.264 in WEBM, a bad
# resolution string). The server should have refused it; failing the output beats retrying it.
OUTPUT_SPEC_UNSUPPORTED: Final = "OUTPUT_SPEC_UNSUPPORTED"
# A custom FFmpeg command outside the allowlist (common/custom_command.py), found by the
# worker's own check right before running it.
UNSUPPORTED_COMMAND: Final = "UNSUPPORTED_COMMAND"
# Transfers to and from an organization's origin through the server's presigned grants:
# the store could not be reached (or answered 5xx) after retries, or it refused a transfer.
STORAGE_UNAVAILABLE: Final = "STORAGE_UNAVAILABLE"
STORAGE_REFUSED: Final = "STORAGE_REFUSED"
# The worker's own scratch disk filled up (FFmpeg or a staged copy met ENOSPC): not the
# input's fault, so retryable, on another worker or once space is freed.
SCRATCH_FULL: Final = "SCRATCH_FULL"
SCRATCH_FULL_MESSAGE: Final = "the worker's scratch disk is full (no space left on device)"
# An overlay's image is not a PNG, is damaged, or is over 4096x4096 pixels or 10 MB.
OVERLAY_INVALID: Final = "OVERLAY_INVALID"
# A text track's sidecar file is no subtitle file of its format, or its cues' times are broken
# (a cue ending before it starts, cues out of order); or the file is over MAX_SIDECAR_BYTES.
TEXT_TRACK_INVALID: Final = "TEXT_TRACK_INVALID"
TEXT_TRACK_TOO_LARGE: Final = "TEXT_TRACK_TOO_LARGE"
# An audio track's extra file has no audio stream.
AUDIO_TRACK_INVALID: Final = "AUDIO_TRACK_INVALID"

# The codes the worker's media and storage steps raise; the server accepts each in a report
# (tests/unit/test_worker_reports.py holds the two lists together). Input policy and the
# loop add INPUT_REFUSED and WORKER_ERROR.
ALL_CODES: Final = frozenset(
    {
        INPUT_UNREADABLE,
        INPUT_EMPTY,
        INPUT_NOT_MEDIA,
        INPUT_CORRUPT,
        INPUT_NO_VIDEO,
        INPUT_NO_AUDIO,
        INPUT_ZERO_DURATION,
        INPUT_DIMENSIONS_TOO_LARGE,
        INPUT_UNSUPPORTED_CODEC,
        ENCODE_FAILED,
        CANCELED,
        OUTPUT_SPEC_UNSUPPORTED,
        UNSUPPORTED_COMMAND,
        STORAGE_UNAVAILABLE,
        STORAGE_REFUSED,
        SCRATCH_FULL,
        OVERLAY_INVALID,
        TEXT_TRACK_INVALID,
        TEXT_TRACK_TOO_LARGE,
        AUDIO_TRACK_INVALID,
    }
)


class MediaError(Exception):
    """A failure with a stable machine-readable code, safe to show to the job's owner.

    `retryable` says whether running the same thing again may succeed without changing the
    input (a network blip, a killed worker), which is what JobError.retryable promises.
    """

    code: str
    message: str
    retryable: bool

    def __init__(self, code: str, message: str = "", *, retryable: bool = False) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message or code
        self.retryable = retryable

    def __repr__(self) -> str:
        return f"MediaError({self.code!r}, {self.message!r}, retryable={self.retryable})"


class OutputSpecError(MediaError):
    """The spec asks for a combination this builder cannot make (e.g. H.264 in WEBM).

    The server validates specs before accepting a job, so reaching this is a gap in that
    validation rather than a property of the input; it is never retryable.
    """

    def __init__(self, message: str) -> None:
        super().__init__(OUTPUT_SPEC_UNSUPPORTED, message)


_FFMPEG_CONTEXT_POINTER = re.compile(r"\[([^\]@]+?) @ 0x[0-9a-fA-F]+\]\s*")
_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/])/(?:[^\s/:'\"]+/)+([^\s/:'\"]+)")


def public_message(stderr_line: str) -> str:
    """Makes an ffmpeg/ffprobe stderr line fit for a job's owner to read.

    Server paths (work directories, storage roots) are reduced to their file name, and the
    `@ 0x55d...` context pointers, which only mean something inside one process, are dropped.
    """
    line = _FFMPEG_CONTEXT_POINTER.sub(lambda match: f"[{match.group(1).strip()}] ", stderr_line)
    line = _ABSOLUTE_PATH.sub(lambda match: match.group(1), line)
    return line.strip()
