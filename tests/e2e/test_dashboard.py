"""The dashboard in a real browser (Debian's chromium driven by playwright-core from Node).

One server and one worker; the Node driver signs in, creates a job from the JSON form (HLS and
DASH ladders, MP4, sprite) and sees its row progress live (Watch, no reload), opens it, plays
the HLS ladder, the DASH output and the MP4 past 2 s with no player error (hls.js ERROR and
dash.js error events, non-fatal ones included) from each output's playback URL (the one its
card shows and copies; no player fetches a /files/ download URL), checks the sprite scrub
preview and both bitrate charts, cancels a running job from its page, retries and cancels it
again, confirms a delayed-start job after reading its estimate, deletes outputs, and opens the
operations view (queue depth from /metrics). Screenshots are left in the test's tmp folder.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

import pytest

from tests.conftest import make_clip
from tests.support.browser import require_browser

from .cluster import REPO, running_cluster

DRIVER = REPO / "tests" / "e2e" / "dashboard" / "dashboard_e2e.mjs"
DOCS_SCREENSHOT = REPO / "docs" / "dashboard-job.png"


@pytest.mark.slow
def test_dashboard_in_a_browser(tmp_path, media_root, long_clip):
    require_browser("dashboard")
    short_clip = media_root / "clip4s.mp4"
    if not short_clip.exists():
        make_clip(short_clip, seconds=4)
    root = tmp_path / "cluster"
    root.mkdir()
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    with running_cluster(f"sqlite:///{tmp_path / 'kiln.db'}", root, media_root, workers=1) as (
        cluster,
        server,
    ):
        key = cluster.create_key("org_dashboard")
        started = time.monotonic()
        arguments = [server.http_url, key, str(short_clip), str(long_clip), str(artifacts)]
        result = subprocess.run(
            ["node", str(DRIVER), *arguments],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        elapsed = time.monotonic() - started
        print(f"browser run {elapsed:.1f} s; artifacts in {artifacts}")
        print(result.stdout)
        assert result.returncode == 0, result.stderr + "\n" + cluster.logs()
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["ok"]
    assert {"PROCESSING", "COMPLETED"} <= set(report["statuses"])
    assert {player["kind"] for player in report["players"]} == {"hls", "dash", "file"}
    assert all(player["time"] >= 2 for player in report["players"])
    assert [len(series) for series in report["chart"]] == [2, 2]  # HLS and DASH ladders
    screenshot = artifacts / "dashboard-job.png"
    assert screenshot.stat().st_size > 10_000
    # KILN_UPDATE_DOCS_SCREENSHOT=1 refreshes docs/dashboard-job.png from this run.
    if os.environ.get("KILN_UPDATE_DOCS_SCREENSHOT") == "1":
        DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(screenshot, DOCS_SCREENSHOT)
