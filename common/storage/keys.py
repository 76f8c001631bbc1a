"""Names of output files inside an output's own prefix.

The server checks every path a worker reports with `safe_relative_path`, and the
storage origins refuse to sign a URL for any other name.
"""

from __future__ import annotations

import re

MAX_PATH_LENGTH = 512
_PATH_SEGMENT = re.compile(r"^[A-Za-z0-9._-]+$")


def safe_relative_path(path: str) -> bool:
    """A file path inside an output's own prefix: relative, normalised, plain characters.

    No leading slash, no '.', '..' or empty segments, no backslashes or control characters:
    exactly the names the worker's packagers write (`v0/seg_00001.m4s`, `master.m3u8`).
    """
    if not path or len(path) > MAX_PATH_LENGTH:
        return False
    return all(
        segment not in (".", "..") and _PATH_SEGMENT.match(segment) is not None
        for segment in path.split("/")
    )
