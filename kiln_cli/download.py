"""`kiln jobs download`: every file of every output into DIR/<output_id>/<path>."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path, PurePosixPath
from urllib.parse import urljoin

import httpx
from kiln.v1 import job_pb2


class UnsafePath(ValueError):
    """A file path from the server that would land outside the download folder."""


def safe_destination(root: Path, output_id: str, path: str) -> Path:
    """Where `path` of output `output_id` goes under `root`; UnsafePath when any part of it
    (absolute, `..`, a backslash, a symlink already in the folder) would leave `root`."""
    for label, value in (("output id", output_id), ("file path", path)):
        if not value or "\x00" in value or "\\" in value:
            raise UnsafePath(f"{label} {value!r} is not a safe relative path")
    if output_id in (".", "..") or "/" in output_id:
        raise UnsafePath(f"output id {output_id!r} is not a single folder name")
    relative = PurePosixPath(path)
    if relative.is_absolute() or any(part in ("..", "") for part in relative.parts):
        raise UnsafePath(f"file path {path!r} would escape the download folder")
    if len(path) >= 2 and path[1] == ":":
        raise UnsafePath(f"file path {path!r} looks like a drive path")
    base = root.resolve()
    target = (base / output_id / Path(*relative.parts)).resolve()
    if not target.is_relative_to(base / output_id) or target == base / output_id:
        raise UnsafePath(f"file path {path!r} would escape the download folder")
    return target


def plan(job: job_pb2.Job, root: Path) -> list[tuple[job_pb2.OutputFile, Path, str]]:
    """(file, destination, output id) for every file; checks every path before any download."""
    return [
        (file, safe_destination(root, output.id, file.path), output.id)
        for output in job.outputs
        for file in output.files
    ]


def fetch(
    http: httpx.Client,
    base_url: str,
    file: job_pb2.OutputFile,
    destination: Path,
    on_bytes: Callable[[int], None] | None = None,
) -> int:
    """Stream one signed URL into `destination` (via a .part file); returns bytes written."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".part")
    written = 0
    with http.stream("GET", urljoin(base_url + "/", file.url)) as response:
        response.raise_for_status()
        with partial.open("wb") as out:
            for chunk in response.iter_bytes():
                out.write(chunk)
                written += len(chunk)
                if on_bytes:
                    on_bytes(len(chunk))
    partial.replace(destination)
    return written
