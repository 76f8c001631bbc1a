"""The dashboard in a real browser (Debian's chromium driven by playwright-core from Node).

One server and one worker; the Node driver signs in, creates a job from the JSON form (HLS and
DASH ladders, MP4, sprite) and sees its row progress live (Watch, no reload), opens it, plays
the HLS ladder, the DASH output and the MP4 past 2 s with no player error (hls.js ERROR and
dash.js error events, non-fatal ones included) from each output's playback URL (the one its
card shows and copies; no player fetches a /files/ download URL), checks the sprite scrub
preview and both bitrate charts, cancels a running job from its page, retries and cancels it
again, confirms a delayed-start job after reading its estimate, deletes outputs, and opens the
operations view (queue depth and the fleet's workers from /metrics: the test's worker ACTIVE
with its one slot, and a worker that announced a hostile host and version once, LOST, its
strings shown as text). The HLS, DASH and MP4 outputs carry two sidecar text tracks (one
named with markup): each player's Subtitles menu lists both by name and language, as text, with
the default chosen; choosing the other makes it the player's active track, read back from the
player, with no console error. The HLS and DASH ladders carry two audio tracks: each player's
Audio menu lists both by name and language with the default chosen, and choosing German
makes it the player's active audio track (the MP4, with one track, has no Audio menu).
A second job has encrypted outputs (AES-128 HLS with key rotation, CENC DASH): labelled, they
play past 2 s from playback grants with no player error.
Screenshots are left in the test's tmp folder.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time

import grpc
import pytest
from kiln.worker.v1 import worker_service_pb2 as wpb
from kiln.worker.v1 import worker_service_pb2_grpc

from tests.conftest import make_clip
from tests.support.browser import require_browser

from .cluster import REPO, ServerProcess, running_cluster

DRIVER = REPO / "tests" / "e2e" / "dashboard" / "dashboard_e2e.mjs"
DOCS_SCREENSHOT = REPO / "docs" / "dashboard-job.png"
# Markup, a quote ending the label value, a newline and a backslash: shown as typed or not at all.
HOSTILE_HOST = '<img src=x onerror="document.title=1">"} kiln_forged 1\n\\'
HOSTILE_VERSION = '9"\n<b>\\'
FRENCH_VTT = "WEBVTT\n\n00:00:00.200 --> 00:00:03.500\nBonjour\n"
GERMAN_SRT = "1\n00:00:00,500 --> 00:00:03,500\nGuten Tag\n"


def announce_hostile_worker(server: ServerProcess) -> None:
    """A worker that announces itself once and is never heard from again: LOST after a lease."""
    with grpc.insecure_channel(server.worker_target) as channel:
        worker_service_pb2_grpc.WorkerServiceStub(channel).AnnounceWorker(
            wpb.AnnounceWorkerRequest(
                worker_id="hostile",
                host=HOSTILE_HOST,
                version=HOSTILE_VERSION,
                capacity=3,
                task_kinds=[wpb.TASK_KIND_PROBE],
                state=wpb.WORKER_STATE_ACTIVE,
            ),
            timeout=10,
        )


@pytest.mark.slow
def test_dashboard_in_a_browser(tmp_path, media_root, long_clip):
    require_browser("dashboard")
    short_clip = media_root / "clip4s.mp4"
    if not short_clip.exists():
        make_clip(short_clip, seconds=4)
    subtitles = media_root / "dashboard-subtitles"
    subtitles.mkdir(exist_ok=True)
    (subtitles / "fr.vtt").write_text(FRENCH_VTT)
    (subtitles / "de.srt").write_text(GERMAN_SRT)
    root = tmp_path / "cluster"
    root.mkdir()
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    with running_cluster(f"sqlite:///{tmp_path / 'kiln.db'}", root, media_root, workers=1) as (
        cluster,
        server,
    ):
        key = cluster.create_key("org_dashboard")
        announce_hostile_worker(server)
        worker_id = f"{socket.gethostname()}-{cluster.workers[0].pid}"  # the default id
        started = time.monotonic()
        arguments = [server.http_url, key, str(short_clip), str(long_clip), str(subtitles)]
        arguments.append(str(artifacts))
        result = subprocess.run(
            ["node", str(DRIVER), *arguments],
            capture_output=True,
            text=True,
            timeout=240,
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
    # A QC badge on every video output of the clean clip, none on the sprite (docs/qc.md).
    assert report["qc"] == {"HLS": "pass", "DASH": "pass", "MP4": "pass", "JPG": None}
    # The operations view: the test's worker ACTIVE with its one slot, the silent one LOST
    # with what it said shown as text (no element made of it).
    workers = {row["id"]: row for row in report["workers"]}
    assert set(workers) == {worker_id, "hostile"}
    assert workers[worker_id]["state"] == "ACTIVE"
    assert workers[worker_id]["load"] in {"0 / 1", "1 / 1"}
    assert workers[worker_id]["host"] == socket.gethostname()
    assert workers["hostile"] == {
        "id": "hostile",
        "state": "LOST",
        "badge": "LOST",
        "load": "0 / 3",
        "host": HOSTILE_HOST,
        "version": HOSTILE_VERSION,
    }
    # Each player's Subtitles menu: Off and both tracks by name and language (the name's markup
    # as text), the default (German, the second) chosen; French chosen is the player's active
    # track.
    options = ["Off", "Français (fr)", "Deutsch <b> (de)"]
    assert report["menus"] == {
        kind: {"options": options, "preselected": "1", "active": 0, "markup": 0}
        for kind in ("hls", "dash", "file")
    }
    # Each ladder player's Audio menu: both tracks, English (the default) chosen and playing;
    # German chosen is the player's active audio track, and the menu shows it.
    assert report["audioMenus"] == {
        kind: {
            "options": ["English (en)", "Deutsch (de)"],
            "preselected": "0",
            "before": "en",
            "after": "de",
            "marked": "1",
        }
        for kind in ("hls", "dash")
    }
    assert report["consoleErrors"] == []
    # The encrypted job (AES-128 HLS rotating every 2 segments, CENC DASH): labelled, played
    # past 2 s from playback grants (URLs with ?kt=) with no player error, the keys from
    # kiln's key endpoint (two AES-128 keys, one Clear Key license), no renewal needed.
    minted = report["encrypted"]["minted"]
    labels = ["encrypted (AES-128, a new key every 2 segments)", "encrypted (CENC)"]
    assert minted["labels"] == labels
    assert minted["errors"] == [], minted["errors"]
    assert [player["kind"] for player in minted["players"]] == ["hls", "dash"]
    assert all(player["time"] >= 2 for player in minted["players"]), minted["players"]
    assert len(minted["urls"]) == 2 and all("?kt=" in url for url in minted["urls"])
    assert minted["renewals"] == []
    keys = [answer for answer in minted["keyAnswers"] if answer["name"] != "clearkey"]
    assert len({answer["name"] for answer in keys}) == 2, minted["keyAnswers"]
    assert {answer["status"] for answer in minted["keyAnswers"]} == {200}
    assert any(answer["name"] == "clearkey" for answer in minted["keyAnswers"])
    assert report["injected"]["elements"] == 0 and report["injected"]["title"] != "1"
    screenshot = artifacts / "dashboard-job.png"
    assert screenshot.stat().st_size > 10_000
    # KILN_UPDATE_DOCS_SCREENSHOT=1 refreshes docs/dashboard-job.png from this run.
    if os.environ.get("KILN_UPDATE_DOCS_SCREENSHOT") == "1":
        DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(screenshot, DOCS_SCREENSHOT)
