"""What the browser tests (dashboard, players) need on the machine, and what to do without."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.e2e.cluster import REPO

CHROMIUM = os.environ.get("KILN_CHROMIUM", "/usr/bin/chromium")
NODE_MODULES = REPO / "dashboard" / "node_modules"


def missing_tools() -> list[str]:
    missing = [tool for tool in ("node",) if shutil.which(tool) is None]
    if not Path(CHROMIUM).exists():
        missing.append(CHROMIUM)
    missing += [
        f"dashboard/node_modules/{module}"
        for module in ("playwright-core", "hls.js", "dashjs")
        if not (NODE_MODULES / module).is_dir()
    ]
    return missing


def require_browser(test: str) -> None:
    """Skip `test` where the browser tools are missing; fail it in CI, where they must not be."""
    missing = missing_tools()
    if missing:
        message = f"the {test} test needs {', '.join(missing)}: run `make dashboard-deps`"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
