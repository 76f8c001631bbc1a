"""Reading a produced file back with ffprobe into an OutputFile."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from kiln.v1 import job_pb2

from common.storage.media_types import mime_type_for
from worker.media.errors import ENCODE_FAILED, MediaError, public_message
from worker.media.probe import ffprobe_float, ffprobe_int, run_ffprobe_json

# Playlists and captions are text that ffprobe either cannot read or would answer by opening
# every segment they reference; their size and MIME type are all an OutputFile needs. Fragmented
# MP4 segments (.m4s) cannot be read without their init segment at all.
# MPEG-TS segments could be probed, but at ~0.2 s each a long ladder would spend minutes on
# them; like .m4s they are described by size and MIME type only.
_NOT_PROBED = frozenset({".m3u8", ".mpd", ".vtt", ".m4s", ".ts"})


async def describe_output_file(
    path: Path, relative_to: Path, *, timeout: float = 60
) -> job_pb2.OutputFile:
    """Describes a file an ffmpeg run wrote. A file ffprobe cannot read is an encode failure."""
    suffix = path.suffix.lower()
    described = job_pb2.OutputFile(
        path=path.relative_to(relative_to).as_posix(),
        size_bytes=(await asyncio.to_thread(path.stat)).st_size,
        mime_type=mime_type_for(path),
    )
    if suffix in _NOT_PROBED:
        return described

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
