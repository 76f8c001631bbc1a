"""Reading cue times back from WebVTT a test fetched or extracted."""

from __future__ import annotations

import re

_STAMP = r"((?:\d\d:)?\d\d:\d\d\.\d{3})"


def _seconds(stamp: str) -> float:
    *hours, minutes, rest = stamp.split(":")
    return int(hours[0] if hours else 0) * 3600 + int(minutes) * 60 + float(rest)


def cue_times(vtt: str) -> list[tuple[float, float]]:
    """(start, end) in seconds of every cue of a WebVTT text, in file order."""
    stamps = re.findall(rf"{_STAMP} --> {_STAMP}", vtt)
    return [(_seconds(start), _seconds(end)) for start, end in stamps]
