"""File extension to MIME type: one table for OutputFile.mime_type, GCS and /files/ responses.

Players pick a demuxer from Content-Type (hls.js refuses a playlist served as octet-stream
from some CDNs), so the table is explicit instead of `mimetypes`, whose answers depend on the
host's /etc/mime.types.
"""

from __future__ import annotations

from pathlib import Path

MIME_TYPES: dict[str, str] = {
    ".mp4": "video/mp4",
    ".webm": "video/webm",
    ".mov": "video/quicktime",
    ".mkv": "video/x-matroska",
    ".m3u8": "application/vnd.apple.mpegurl",
    ".mpd": "application/dash+xml",
    ".ts": "video/mp2t",
    ".m4s": "video/iso.segment",
    ".mp3": "audio/mpeg",
    ".m4a": "audio/mp4",
    ".opus": "audio/ogg",
    ".wav": "audio/wav",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".gif": "image/gif",
    ".vtt": "text/vtt",
    ".json": "application/json",
}

DEFAULT_MIME_TYPE = "application/octet-stream"


def mime_type_for(path: Path | str) -> str:
    return MIME_TYPES.get(Path(path).suffix.lower(), DEFAULT_MIME_TYPE)
