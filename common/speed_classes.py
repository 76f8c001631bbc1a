"""Kinds of output that encode at comparable speeds, named the same by workers and server.

A worker measures how fast its tasks of each kind run (media seconds per wall second) and
announces it; the server looks the speed up by the same name to tell how long queued work
will take. The name is coarse on purpose: the video codec and the tallest variant's height,
rounded up to a standard one, are what moves an encode's speed most; finer classes would
leave most of them without a measurement.
"""

from __future__ import annotations

from kiln.v1 import job_pb2

from .output_types import IMAGES

# Standard heights a variant's height is rounded up to ("720" holds 540p to 720p).
HEIGHTS = (240, 360, 480, 720, 1080, 1440, 2160, 4320)
AUDIO = "audio"
IMAGE = "image"
CUSTOM = "custom"
_CODEC_PREFIX = "VIDEO_CODEC_"


def video_class(codec: int, height: int) -> str:
    known = codec in job_pb2.VideoCodec.values()
    name = job_pb2.VideoCodec.Name(codec) if known else "VIDEO_CODEC_UNSPECIFIED"
    name = name.removeprefix(_CODEC_PREFIX).lower()
    rounded = next((standard for standard in HEIGHTS if height <= standard), HEIGHTS[-1])
    return f"{name}/{rounded}"


def speed_class(spec: job_pb2.OutputSpec, info: job_pb2.InputInfo) -> str:
    """The kind of `spec`'s output made from the input `info` describes.

    A variant above the source is encoded at the source's height unless it allows
    upscaling, so that is the height that counts."""
    source_height = displayed_height(info)
    if spec.HasField("custom"):
        return CUSTOM
    if spec.type in IMAGES:
        return IMAGE
    if not spec.video:
        return AUDIO
    heights = []
    for variant in spec.video:
        height = resolution_height(variant.resolution) or source_height
        if source_height and height > source_height and not variant.allow_upscale:
            height = source_height
        heights.append(height)
    tallest = max(range(len(heights)), key=lambda index: heights[index])
    return video_class(spec.video[tallest].codec, heights[tallest])


def displayed_height(info: job_pb2.InputInfo) -> int:
    """The first video stream's height as shown (a 90/270 rotation swaps the sides); 0
    without video."""
    video = next((stream for stream in info.streams if stream.kind == "video"), None)
    if video is None:
        return 0
    return video.width if video.rotation in (90, 270) else video.height


def resolution_height(resolution: str) -> int:
    """The height a resolution asks for ("720p", "1280x720"); 0 when it names none."""
    text = resolution.strip().lower()
    if text.endswith("p") and text[:-1].isdigit():
        return int(text[:-1])
    width, _, height = text.partition("x")
    if width.isdigit() and height.isdigit():
        return int(height)
    return 0


def known_classes() -> frozenset[str]:
    """Every name a worker may announce a speed for."""
    codecs = job_pb2.VideoCodec.values()
    video = {video_class(codec, height) for codec in codecs for height in HEIGHTS}
    return frozenset(video | {AUDIO, IMAGE, CUSTOM})
