"""Parser for the key=value blocks ffmpeg writes with `-progress pipe:1 -nostats`."""

from __future__ import annotations

_TIME_KEYS = ("out_time_us", "out_time_ms")


class ProgressParser:
    """Turns progress lines into a percentage of `duration_seconds`.

    ffmpeg writes a block of key=value lines every 0.5 s (and one at t=0), each ending with
    `progress=continue` or `progress=end`. Only the block end yields a value, so a caller sees
    one consistent reading per block. `out_time_ms` is, despite its name, in microseconds
    (a long-standing ffmpeg quirk), so both keys are read the same way.

    The returned percentage never goes down: out_time can step back briefly (B-frame reordering,
    a second output stream lagging), and job progress is promised to be monotonic.
    """

    def __init__(self, duration_seconds: float) -> None:
        self.duration_seconds = duration_seconds
        self.percent = 0.0
        self._block_time_us: int | None = None

    def feed(self, line: str) -> float | None:
        key, sep, value = line.strip().partition("=")
        if not sep:
            return None
        key = key.strip()
        value = value.strip()
        if key in _TIME_KEYS:
            # "N/A" appears before the first frame is muxed; negative values appear with
            # edit lists. Neither says anything about how far along we are.
            try:
                micros = int(value)
            except ValueError:
                return None
            if micros >= 0:
                self._block_time_us = micros
            return None
        if key != "progress":
            return None
        if value == "end":
            self.percent = 100.0
        elif self._block_time_us is not None and self.duration_seconds > 0:
            percent = self._block_time_us / 1e6 / self.duration_seconds * 100.0
            self.percent = max(self.percent, min(100.0, percent))
        self._block_time_us = None
        return self.percent
