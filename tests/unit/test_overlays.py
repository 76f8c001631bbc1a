"""Overlays without I/O: what Create refuses beyond the e2e list, and the graph each rung gets."""

from __future__ import annotations

from pathlib import Path

import pytest
from kiln.v1 import job_pb2

from server.domain.overlay_validation import check_overlays
from worker.media.overlays import Frame, OverlayDrawing, StagedImage

P = job_pb2.OverlayPosition
LADDER = job_pb2.OutputSpec(
    type=job_pb2.OUTPUT_TYPE_HLS,
    video=[job_pb2.VideoVariant(codec=job_pb2.VIDEO_CODEC_H264, resolution="720p")],
)


def problems(*overlays: job_pb2.Overlay, spec: job_pb2.OutputSpec = LADDER) -> dict[str, str]:
    found: dict[str, str] = {}
    output = job_pb2.OutputSpec()
    output.CopyFrom(spec)
    output.overlays.extend(overlays)

    def bad(path: str, why: str) -> None:
        found.setdefault(path, why)

    check_overlays("outputs[0]", output, bad)
    return found


def text(value: str = "PREVIEW", **fields) -> job_pb2.Overlay:
    return job_pb2.Overlay(text=job_pb2.OverlayText(text=value), **fields)


def test_a_good_overlay_passes():
    image = job_pb2.Overlay(
        image=job_pb2.OverlayImage(url="file:///media/logo.png", width_fraction=0.2),
        position=P.OVERLAY_POSITION_BOTTOM_RIGHT,
        margin=0,
        opacity=0,
        start_seconds=1,
        end_seconds=2,
    )
    timecode = job_pb2.Overlay(text=job_pb2.OverlayText(timecode=True))
    assert problems(image, text(x=0, y=1), timecode) == {}


@pytest.mark.parametrize(
    ("overlay", "path", "fragment"),
    [
        (text(position=P.OVERLAY_POSITION_CENTER, x=0.1, y=0.1), "position", "not both"),
        (text(x=1.5, y=0.5), "x", "between 0 and 1"),
        (text(position=9), "position", "unknown position"),
        (text(opacity=float("nan")), "opacity", "between 0"),
        (text(start_seconds=-1), "start_seconds", "between 0"),
        (text("x" * 101), "text.text", "at most 100"),
        (text("a\u200bb"), "text.text", "control characters"),
        (text(""), "text.text", "is required"),
        (
            job_pb2.Overlay(text=job_pb2.OverlayText(text="x", timecode=True)),
            "text.text",
            "not both",
        ),
        (
            job_pb2.Overlay(text=job_pb2.OverlayText(text="x", height_fraction=0.6)),
            "text.height_fraction",
            "between 0.01 and 0.5",
        ),
        (job_pb2.Overlay(image=job_pb2.OverlayImage()), "image.url", "is required"),
        (job_pb2.Overlay(), "", "exactly one of image and text"),
    ],
)
def test_bad_overlays_are_named_by_field(overlay, path, fragment):
    where = f"outputs[0].overlays[0].{path}".rstrip(".")
    assert fragment in problems(overlay).get(where, ""), problems(overlay)


def test_custom_commands_take_no_overlays():
    custom = job_pb2.OutputSpec(
        type=job_pb2.OUTPUT_TYPE_MP4, custom=job_pb2.CustomCommand(args=["-i", "{{input}}"])
    )
    assert "not custom commands" in problems(text(), spec=custom)["outputs[0].overlays"]


def test_each_rung_gets_its_own_sizes_and_a_chunk_its_own_time():
    logo = job_pb2.Overlay(
        image=job_pb2.OverlayImage(url="file:///logo.png", width_fraction=0.25),
        position=P.OVERLAY_POSITION_TOP_RIGHT,
        opacity=0.5,
        start_seconds=10,
        end_seconds=20,
    )
    drawing = OverlayDrawing(
        [logo, text()], [StagedImage(Path("/scratch/overlay-0.png"), 200, 100)], time_offset=8
    )
    frames = [Frame("[s0]", "[v0]", 1280, 720), Frame("[s1]", "[v1]", 640, 360)]
    chains = drawing.chains(frames)
    assert drawing.input_args() == ["-f", "png_pipe", "-i", "/scratch/overlay-0.png"]
    assert chains[0] == "[1:v]split=2[img0_0][img0_1]"
    assert "[img0_0]scale=320:160,format=rgba,colorchannelmixer=aa=0.5[pic0_0]" in chains
    assert "[img0_1]scale=160:80,format=rgba,colorchannelmixer=aa=0.5[pic1_0]" in chains
    # Margins follow the rung (2 % of its width); the window is shifted by the chunk's 8 s.
    window = "enable=between(t\\,2\\,12)"
    assert f"[s0][pic0_0]overlay=x=W-w-26:y=26:eof_action=repeat:{window}[ov0_0]" in chains
    assert f"[s1][pic1_0]overlay=x=W-w-13:y=13:eof_action=repeat:{window}[ov1_0]" in chains
    # Text last, onto each rung's output label, 5 % of the rung's height, never expanded.
    assert chains[-1].startswith("[ov1_0]drawtext=") and chains[-1].endswith("[v1]")
    assert ":expansion=none:fontsize=18:" in chains[-1]
