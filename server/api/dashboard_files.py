"""The dashboard's static files under /ui/ (and / redirecting there).

`/ui/…` cannot collide with Connect (`/kiln.v1.<Service>/…`), `/healthz`, `/files/…` or
`/metrics`. Two sources, nothing else: the dashboard's own files (`dashboard/static/`, any
depth, resolved and checked to stay inside it) and a fixed table of player builds from
`dashboard/node_modules` (installed by `make dashboard-deps`), so nothing else under
node_modules — or the repository — is ever reachable.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PREFIX = "/ui/"
DASHBOARD_DIR = Path(__file__).resolve().parents[2] / "dashboard"

CONTENT_TYPES: dict[str, str] = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
}

# /ui/vendor/<name> -> a file inside dashboard/node_modules.
VENDOR_FILES: dict[str, str] = {
    "hls.min.js": "hls.js/dist/hls.min.js",
    "dash.all.min.js": "dashjs/dist/modern/umd/dash.all.min.js",
}


@dataclass(frozen=True)
class StaticFile:
    path: Path
    content_type: str


class DashboardFiles:
    def __init__(self, root: Path = DASHBOARD_DIR) -> None:
        self.static_dir = (root / "static").resolve()
        self.modules_dir = (root / "node_modules").resolve()

    def find(self, request_path: str) -> StaticFile | None:
        """The file a decoded `/ui/…` path (ASGI's scope["path"]) names, or None (missing,
        unknown type, or outside)."""
        relative = request_path.removeprefix(PREFIX)
        if relative in ("", "/"):
            relative = "index.html"
        if relative.startswith("vendor/"):
            target = VENDOR_FILES.get(relative.removeprefix("vendor/"))
            if target is None:
                return None
            return _existing(self.modules_dir / target, self.modules_dir)
        if "\x00" in relative or "\\" in relative:
            return None
        return _existing(self.static_dir / relative, self.static_dir)


def _existing(candidate: Path, inside: Path) -> StaticFile | None:
    content_type = CONTENT_TYPES.get(candidate.suffix.lower())
    if content_type is None:
        return None
    try:
        resolved = candidate.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    # Symlinks and `..` are resolved first; whatever they lead to must stay inside.
    if not resolved.is_relative_to(inside) or not resolved.is_file():
        return None
    return StaticFile(resolved, content_type)
