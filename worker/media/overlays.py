"""Overlays: images and text drawn over an output's video, as filter-graph text.

Owns OverlayDrawing, which the progressive, ladder and chunk builders hand the frames of
their variants (a label in, a label out, the variant's size) and get back the filter chains
that draw every overlay of the spec on each, in order. Sizes, margins and positions are
fractions of the frame (docs/overlays.md), turned into pixels here per variant, so a 1080p
and a 360p rung look the same.

Each image is one extra input (a PNG the worker staged and checked, worker.overlay_images),
split once per variant; opacity scales its alpha. Text is drawtext with a fixed font and
expansion=none, so nothing in the user's text is read as %{...}; the text is escaped for
both levels FFmpeg parses (the filter graph, then the filter's options). Times are seconds
of the output; a chunk, whose timestamps start at 0 at its own start, shifts the window by
its start (time_offset), so the overlay appears at the same output time in every chunk.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kiln.v1 import job_pb2

from worker.media.timing import seconds_arg

P = job_pb2.OverlayPosition

# Debian's fonts-dejavu-core (the Makefile's system deps install it): one fixed face, so a
# text overlay looks the same on every worker.
FONT_FILE = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
DEFAULT_MARGIN = 0.02
DEFAULT_WIDTH_FRACTION = 0.1
DEFAULT_HEIGHT_FRACTION = 0.05
# The demuxer of every overlay image: the worker accepts PNG only, and naming the demuxer
# keeps FFmpeg from reading a staged file name as an image2 pattern.
IMAGE_DEMUXER = "png_pipe"

# Characters the option parser (av_get_token with ':') and then the graph parser (with
# '[],;') would otherwise read as syntax.
_OPTION_SPECIALS = re.compile(r"([\\':])")
_GRAPH_SPECIALS = re.compile(r"([\\'\[\],;])")


@dataclass(frozen=True)
class StagedImage:
    """An image overlay's PNG on the worker's disk, with its checked size in pixels."""

    path: Path
    width: int
    height: int


@dataclass(frozen=True)
class Frame:
    """One variant's video in the filter graph: drawn on from `source` into `target`."""

    source: str
    target: str
    width: int
    height: int


@dataclass(frozen=True)
class OverlayDrawing:
    """The overlays of one output; images[i] is the staged file of the i-th image overlay."""

    overlays: Sequence[job_pb2.Overlay]
    images: Sequence[StagedImage]
    # FFmpeg input index of the first image (the source is input 0).
    first_input: int = 1
    # Seconds of the output at which this run's timestamps are 0 (a chunk's start).
    time_offset: float = 0.0

    def input_args(self) -> list[str]:
        return [
            argument
            for image in self.images
            for argument in ("-f", IMAGE_DEMUXER, "-i", str(image.path))
        ]

    def chains(self, frames: Sequence[Frame]) -> list[str]:
        """Filter chains drawing every overlay on every frame, images split once per frame."""
        chains: list[str] = []
        image_labels: list[list[str]] = []
        for number in range(len(self.images)):
            source = f"[{self.first_input + number}:v]"
            if len(frames) == 1:
                image_labels.append([source])
                continue
            labels = [f"[img{number}_{copy}]" for copy in range(len(frames))]
            chains.append(f"{source}split={len(frames)}{''.join(labels)}")
            image_labels.append(labels)
        for copy, frame in enumerate(frames):
            current = frame.source
            image_number = 0
            for index, overlay in enumerate(self.overlays):
                drawn = frame.target if index == len(self.overlays) - 1 else f"[ov{copy}_{index}]"
                if overlay.HasField("image"):
                    picture = f"[pic{copy}_{index}]"
                    chains.append(
                        image_labels[image_number][copy]
                        + self._image_steps(overlay, self.images[image_number], frame)
                        + picture
                    )
                    chains.append(f"{current}{picture}{self._placement(overlay, frame)}{drawn}")
                    image_number += 1
                else:
                    chains.append(f"{current}{self._text(overlay, frame)}{drawn}")
                current = drawn
        return chains

    def _image_steps(self, overlay: job_pb2.Overlay, image: StagedImage, frame: Frame) -> str:
        fraction = overlay.image.width_fraction or DEFAULT_WIDTH_FRACTION
        width = max(1, round(fraction * frame.width))
        height = max(1, round(width * image.height / image.width))
        steps = [f"scale={width}:{height}", "format=rgba"]
        opacity = _opacity(overlay)
        if opacity < 1:
            steps.append(f"colorchannelmixer=aa={opacity:g}")
        return ",".join(steps)

    def _placement(self, overlay: job_pb2.Overlay, frame: Frame) -> str:
        x, y = _position(overlay, frame, "W", "H", "w", "h")
        options = [f"x={x}", f"y={y}", "eof_action=repeat"]
        window = self._window(overlay)
        if window:
            options.append(window)
        return "overlay=" + ":".join(options)

    def _text(self, overlay: job_pb2.Overlay, frame: Frame) -> str:
        text = overlay.text
        size = max(1, round((text.height_fraction or DEFAULT_HEIGHT_FRACTION) * frame.height))
        if text.timecode:
            # Built here, never from the user's text: the only expanded text kiln writes.
            content = f"%{{pts:hms:{seconds_arg(self.time_offset)}}}"
            expansion = "normal"
        else:
            content, expansion = text.text, "none"
        x, y = _position(overlay, frame, "w", "h", "tw", "th")
        options = [
            f"fontfile={_escaped(str(FONT_FILE))}",
            f"text={_escaped(content)}",
            f"expansion={expansion}",
            f"fontsize={size}",
            "fontcolor=white",
            f"borderw={max(1, round(size / 16))}",
            "bordercolor=black",
            f"alpha={_opacity(overlay):g}",
            f"x={x}",
            f"y={y}",
        ]
        window = self._window(overlay)
        if window:
            options.append(window)
        return "drawtext=" + ":".join(options)

    def _window(self, overlay: job_pb2.Overlay) -> str:
        """The enable option of the overlay's time window in this run's own time, or ""."""
        start = overlay.start_seconds - self.time_offset
        if overlay.HasField("end_seconds"):
            end = overlay.end_seconds - self.time_offset
            return f"enable=between(t\\,{seconds_arg(start)}\\,{seconds_arg(end)})"
        if start > 0:
            return f"enable=gte(t\\,{seconds_arg(start)})"
        return ""


def one_variant_video(
    overlays: OverlayDrawing | None, video_index: int, scaling: str, width: int, height: int
) -> tuple[list[str], str, list[str]]:
    """For an encode of one variant: (the overlays' input arguments, what -map takes for the
    video, the video's filter arguments). Without overlays: no inputs, the source's video
    stream, and `scaling` as -vf."""
    if overlays is None:
        return [], f"0:{video_index}", ["-vf", scaling]
    frame = Frame("[scaled]", "[drawn]", width, height)
    graph = [f"[0:{video_index}]{scaling}[scaled]", *overlays.chains([frame])]
    return overlays.input_args(), "[drawn]", ["-filter_complex", ";".join(graph)]


def _opacity(overlay: job_pb2.Overlay) -> float:
    return overlay.opacity if overlay.HasField("opacity") else 1.0


def _position(
    overlay: job_pb2.Overlay, frame: Frame, main_w: str, main_h: str, own_w: str, own_h: str
) -> tuple[str, str]:
    """x and y as expressions of the filter's own variables (frame and overlay sizes)."""
    if overlay.HasField("x"):
        return str(round(overlay.x * frame.width)), str(round(overlay.y * frame.height))
    margin = round((overlay.margin if overlay.HasField("margin") else DEFAULT_MARGIN) * frame.width)
    left, top = str(margin), str(margin)
    right, bottom = f"{main_w}-{own_w}-{margin}", f"{main_h}-{own_h}-{margin}"
    corners = {
        P.OVERLAY_POSITION_TOP_RIGHT: (right, top),
        P.OVERLAY_POSITION_BOTTOM_LEFT: (left, bottom),
        P.OVERLAY_POSITION_BOTTOM_RIGHT: (right, bottom),
        P.OVERLAY_POSITION_CENTER: (f"({main_w}-{own_w})/2", f"({main_h}-{own_h})/2"),
    }
    return corners.get(overlay.position, (left, top))


def _escaped(value: str) -> str:
    """`value` as one option value inside a filter graph: escaped for the option parser,
    then again for the graph parser, so it reaches the filter exactly as written."""
    return _GRAPH_SPECIALS.sub(r"\\\1", _OPTION_SPECIALS.sub(r"\\\1", value))
