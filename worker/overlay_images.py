"""An output's overlay images: read like the task's input, staged, and checked before FFmpeg.

Each image URL goes through the same input policy as the video input (file:// under the
roots, gs:// from input buckets, http(s) through the task's egress proxy, so a private or
metadata address is refused there and the task fails with INPUT_REFUSED). Every image is
copied into the task's scratch folder, at most MAX_IMAGE_BYTES, and must be a whole PNG of at
most MAX_IMAGE_SIDE pixels a side, read from its own headers: a huge picture is refused
before any decoder allocates it. Anything else fails the output with OVERLAY_INVALID.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from urllib.parse import urlsplit

from kiln.v1 import job_pb2

from common.input_policy import InputRefused

from . import remote
from .inputs import INPUT_REFUSED, TaskInputs
from .media.errors import OVERLAY_INVALID, MediaError
from .media.image_headers import read_png
from .media.overlays import FONT_FILE, OverlayDrawing, StagedImage

MAX_IMAGE_BYTES = 10 * 1024 * 1024
MAX_IMAGE_SIDE = 4096


async def prepare_overlays(
    spec: job_pb2.OutputSpec, inputs: TaskInputs, folder: Path
) -> OverlayDrawing | None:
    """The spec's overlays with their images staged under `folder`; None without overlays."""
    if not spec.overlays:
        return None
    if any(overlay.HasField("text") for overlay in spec.overlays) and not FONT_FILE.is_file():
        raise MediaError(
            "WORKER_ERROR",
            "this worker has no DejaVu Sans font for text overlays (Debian's fonts-dejavu-core)",
            retryable=True,
        )
    images = []
    for index, overlay in enumerate(spec.overlays):
        if overlay.HasField("image"):
            where = f"overlays[{index}].image"
            target = folder / f"overlay-{index}.png"
            await _stage(overlay.image.url, target, inputs, where)
            images.append(await asyncio.to_thread(_checked, target, where))
    return OverlayDrawing(overlays=list(spec.overlays), images=images)


async def _stage(url: str, target: Path, inputs: TaskInputs, where: str) -> None:
    try:
        inputs.policy.check_syntax(url)
    except InputRefused as refused:
        raise MediaError(INPUT_REFUSED, f"{where} refused: {refused}") from None
    target.parent.mkdir(parents=True, exist_ok=True)
    scheme = urlsplit(url).scheme.lower()
    if scheme == "file":
        try:
            source = inputs.policy.local_path(url)
        except InputRefused as refused:
            raise MediaError(INPUT_REFUSED, f"{where} refused: {refused}") from None
        await asyncio.to_thread(_copy_local, source, target, where)
    elif scheme == "gs":
        await inputs.stage_gs(url, target)
    elif scheme in ("http", "https"):
        try:
            await remote.stage(url, target, inputs.session.proxy_url, max_bytes=MAX_IMAGE_BYTES)
        except remote.TooLarge:
            raise _too_large(where) from None
    else:
        raise MediaError(OVERLAY_INVALID, f"{where}: {scheme}:// is not supported")


def _copy_local(source: Path, target: Path, where: str) -> None:
    if not source.is_file():
        raise MediaError("INPUT_UNREADABLE", f"{where} does not exist")
    if source.stat().st_size > MAX_IMAGE_BYTES:
        raise _too_large(where)
    shutil.copyfile(source, target)


def _too_large(where: str) -> MediaError:
    return MediaError(OVERLAY_INVALID, f"{where} is larger than 10 MB")


def _checked(path: Path, where: str) -> StagedImage:
    with path.open("rb") as handle:
        data = handle.read(MAX_IMAGE_BYTES + 1)
    if len(data) > MAX_IMAGE_BYTES:
        raise _too_large(where)
    description = read_png(data)
    if description is None:
        raise MediaError(OVERLAY_INVALID, f"{where} is not a PNG image (or it is damaged)")
    if min(description.width, description.height) < 1:
        raise MediaError(OVERLAY_INVALID, f"{where} has no pixels")
    if max(description.width, description.height) > MAX_IMAGE_SIDE:
        raise MediaError(
            OVERLAY_INVALID,
            f"{where} is {description.width}x{description.height} pixels; "
            f"at most {MAX_IMAGE_SIDE}x{MAX_IMAGE_SIDE}",
        )
    return StagedImage(path, description.width, description.height)
