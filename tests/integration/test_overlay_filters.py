"""Overlay filter chains run by the real FFmpeg: text reaches drawtext exactly as written, and a
chunk draws an overlay at the same output time as a single pass."""

from __future__ import annotations

import subprocess
from pathlib import Path

from kiln.v1 import job_pb2

from worker.media.overlays import FONT_FILE, Frame, OverlayDrawing

WIDTH, HEIGHT = 320, 180
# Every character either parser of a filter graph gives a meaning to, and drawtext's own.
TRICKY = "a'b:c,d;[e]=f\\g%{pts}%%h 'i'"


def render(graph: str, *, seconds: float = 0.0) -> bytes:
    """One RGB picture of grey 320x180 through `graph` ([0:v] in, [out] out) at `seconds`."""
    argv = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error"]
    argv += ["-f", "lavfi", "-i", f"color=c=gray:s={WIDTH}x{HEIGHT}:r=10:d=3"]
    argv += ["-filter_complex", graph, "-map", "[out]", "-ss", str(seconds), "-frames:v", "1"]
    argv += ["-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]
    return subprocess.run(argv, capture_output=True, check=True).stdout


def text_chain(overlay: job_pb2.Overlay, time_offset: float = 0.0) -> str:
    drawing = OverlayDrawing([overlay], [], time_offset=time_offset)
    return ";".join(drawing.chains([Frame("[0:v]", "[out]", WIDTH, HEIGHT)]))


def test_text_is_drawn_as_written(tmp_path: Path):
    overlay = job_pb2.Overlay(text=job_pb2.OverlayText(text=TRICKY, height_fraction=0.1))
    drawn = render(text_chain(overlay))
    # The same text read from a file, which no parser escapes or expands.
    (tmp_path / "text.txt").write_text(TRICKY)
    reference = (
        f"[0:v]drawtext=fontfile={FONT_FILE}:textfile={tmp_path / 'text.txt'}:expansion=none"
        ":fontsize=18:fontcolor=white:borderw=1:bordercolor=black:alpha=1:x=6:y=6[out]"
    )
    assert drawn == render(reference)
    assert drawn != render("[0:v]null[out]")


def test_a_chunk_shows_an_overlay_at_the_output_time_of_a_single_pass():
    overlay = job_pb2.Overlay(
        text=job_pb2.OverlayText(text="LATE"), start_seconds=1.4, end_seconds=2.5
    )
    whole = text_chain(overlay)
    # A chunk starting at output second 1: its own timestamps start at 0.
    chunk = text_chain(overlay, time_offset=1.0)
    plain = render("[0:v]null[out]")
    assert render(whole, seconds=1.2) == plain
    assert render(whole, seconds=1.8) != plain
    assert render(chunk, seconds=0.2) == plain
    assert render(chunk, seconds=0.8) == render(whole, seconds=1.8)
    assert render(chunk, seconds=1.6) == plain
