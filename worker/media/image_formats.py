"""Still image formats (JPG, PNG, WEBP) and the output options that write one frame as a file.

Owns IMAGE_FORMATS (file name and encoder options per OutputType) and one_image_args, shared by
single thumbnails and TIMESTAMPS series in worker.media.images.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from kiln.v1 import job_pb2

OutputType = job_pb2.OutputType


@dataclass(frozen=True)
class ImageFormat:
    file_name: str
    encoder_args: tuple[str, ...]


IMAGE_FORMATS: Mapping[int, ImageFormat] = {
    # mjpeg -q:v runs 2 (best) to 31; 2-3 is visually lossless for previews.
    OutputType.OUTPUT_TYPE_JPG: ImageFormat("output.jpg", ("-c:v", "mjpeg", "-q:v", "2")),
    OutputType.OUTPUT_TYPE_PNG: ImageFormat("output.png", ("-c:v", "png")),
    OutputType.OUTPUT_TYPE_WEBP: ImageFormat(
        "output.webp", ("-c:v", "libwebp", "-quality", "80", "-lossless", "0")
    ),
}


def one_image_args(
    stream: str, width: int, height: int, image: ImageFormat, output: Path
) -> list[str]:
    """Output options writing one frame of `stream` as one image file."""
    return [
        "-map",
        stream,
        "-frames:v",
        "1",
        "-vf",
        f"scale={width}:{height},setsar=1",
        *image.encoder_args,
        # -update writes one fixed file name instead of treating it as a numbered pattern.
        "-update",
        "1",
        "-f",
        "image2",
        str(output),
    ]
