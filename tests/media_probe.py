"""ffprobe of downloaded results, for assertions."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path


def ffprobe(path: Path) -> dict:
    result = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_format",
            "-show_streams",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout)


def streams(info: dict, kind: str) -> list[dict]:
    return [s for s in info["streams"] if s["codec_type"] == kind]


def decoded_frames(source: str | Path) -> dict[str, list[int]]:
    """FFmpeg decodes every stream a file or URL leads to (following playlists and MPDs
    over HTTP): frames decoded per stream, by media type ("video": [60, 60] for a ladder).

    Video and audio are decoded in two runs: FFmpeg 5.1's DASH demuxer ends every stream when
    its first representation ends, so with `-map 0` the last video frames of a short ladder
    are lost after the audio ends (reading the MPD from disk too; each kind alone decodes
    whole).
    """
    found: dict[str, list[int]] = {}
    for kind in ("v", "a"):
        found.update(_decoded_frames(str(source), f"0:{kind}"))
    return found


def _decoded_frames(source: str, streams: str) -> dict[str, list[int]]:
    command = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-i", source, "-map", streams]
    result = subprocess.run(
        [*command, "-f", "framemd5", "-"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr
    kinds: dict[int, str] = {}
    counts: dict[int, int] = {}
    for line in result.stdout.splitlines():
        if line.startswith("#media_type"):
            number, kind = line.removeprefix("#media_type").split(":")
            kinds[int(number)] = kind.strip()
        elif line and not line.startswith("#"):
            index = int(line.split(",")[0])
            counts[index] = counts.get(index, 0) + 1
    found: dict[str, list[int]] = {}
    for index, kind in sorted(kinds.items()):
        found.setdefault(kind, []).append(counts.get(index, 0))
    return found
