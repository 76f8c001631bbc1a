"""Reading a produced file back into an OutputFile: from its headers or with ffprobe."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from kiln.v1 import job_pb2

from common.storage.media_types import mime_type_for
from worker.media.errors import ENCODE_FAILED, MediaError, public_message
from worker.media.image_headers import IMAGE_SUFFIXES, ImageDescription, describe_image
from worker.media.probe import ffprobe_float, ffprobe_int, run_ffprobe_json

# Playlists and captions are text that ffprobe either cannot read or would answer by opening
# every segment they reference; their size and MIME type are all an OutputFile needs. Fragmented
# MP4 segments (.m4s) cannot be read without their init segment at all.
# MPEG-TS segments could be probed, but at ~0.2 s each a long ladder would spend minutes on
# them; like .m4s they are described by size and MIME type only. JSON files are the reports kiln
# writes beside the media (quality.json, qc.json): not media, so not probed.
_NOT_PROBED = frozenset({".m3u8", ".mpd", ".vtt", ".m4s", ".ts", ".json"})


async def describe_output_file(
    path: Path, relative_to: Path, *, timeout: float = 60
) -> job_pb2.OutputFile:
    """Describes a file an ffmpeg run wrote. A file ffprobe cannot read is an encode failure.

    A JPEG, PNG or WebP is described from its headers when worker.media.image_headers can
    tell exactly what ffprobe would say (saving an ffprobe run, ~60 ms); any other, or a
    picture it cannot vouch for, is read by ffprobe (probe_output_file).
    """
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        # One trip to a thread for both the size and the headers.
        size, image = await asyncio.to_thread(_size_and_image, path)
        if image is not None:
            return job_pb2.OutputFile(
                path=path.relative_to(relative_to).as_posix(),
                size_bytes=size,
                mime_type=mime_type_for(path),
                container=image.container,
                codec=image.codec,
                width=image.width,
                height=image.height,
                duration_seconds=image.duration_seconds,
                bitrate=image.bitrate,
            )
    if suffix in _NOT_PROBED:
        return await _basics(path, relative_to)
    return await probe_output_file(path, relative_to, timeout=timeout)


async def probe_output_file(
    path: Path, relative_to: Path, *, timeout: float = 60
) -> job_pb2.OutputFile:
    """Describes a file with ffprobe. A file ffprobe cannot read is an encode failure."""
    described = await _basics(path, relative_to)
    returncode, parsed, stderr = await run_ffprobe_json(str(path), timeout=timeout)
    if returncode != 0:
        last_line = next((line for line in reversed(stderr.splitlines()) if line.strip()), "")
        raise MediaError(
            ENCODE_FAILED,
            public_message(last_line) or f"{path.name}: the output cannot be read back",
        )
    format_section: dict[str, Any] = parsed.get("format") or {}
    streams: list[dict[str, Any]] = parsed.get("streams") or []
    video = next((s for s in streams if s.get("codec_type") == "video"), None)
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    first = video or audio or {}

    described.container = str(format_section.get("format_name", ""))
    described.codec = str(first.get("codec_name", ""))
    if video is not None:
        described.width = ffprobe_int(video.get("width"))
        described.height = ffprobe_int(video.get("height"))
    described.duration_seconds = ffprobe_float(format_section.get("duration")) or ffprobe_float(
        first.get("duration")
    )
    described.bitrate = ffprobe_int(format_section.get("bit_rate"))
    return described


def _size_and_image(path: Path) -> tuple[int, ImageDescription | None]:
    return path.stat().st_size, describe_image(path)


async def _basics(path: Path, relative_to: Path) -> job_pb2.OutputFile:
    """What every output file reports: where it is, its size and its MIME type."""
    return job_pb2.OutputFile(
        path=path.relative_to(relative_to).as_posix(),
        size_bytes=(await asyncio.to_thread(path.stat)).st_size,
        mime_type=mime_type_for(path),
    )
