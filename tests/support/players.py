"""Playing outputs in a real browser: a page on another origin than kiln's, and the driver
(tests/e2e/players/play_outputs.mjs) that plays cases in it and reports what the players saw."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from server.api.dashboard_files import PREFIX, DashboardFiles
from tests.e2e.cluster import REPO
from tests.support.browser import CHROMIUM

DRIVER = REPO / "tests" / "e2e" / "players" / "play_outputs.mjs"
# The player builds the page loads, by the names the dashboard serves them under (/ui/vendor/).
PLAYER_BUILDS = ("hls.min.js", "dash.all.min.js")


@contextmanager
def other_origin_site(folder: Path) -> Iterator[str]:
    """A blank page and the dashboard's player builds, served from a port of their own: a
    different origin from kiln's, as a customer's site is. Yields the site's URL."""
    folder.mkdir()
    (folder / "index.html").write_text("<!doctype html><title>players</title><body></body>\n")
    dashboard = DashboardFiles()
    for name in PLAYER_BUILDS:
        build = dashboard.find(f"{PREFIX}vendor/{name}")
        assert build is not None, name
        shutil.copyfile(build.path, folder / name)

    class Handler(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            """Quiet: the driver reports what the page saw."""

    site = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(folder)))
    thread = threading.Thread(target=site.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{site.server_address[1]}"
    finally:
        site.shutdown()
        site.server_close()
        thread.join()


def play_cases(config: dict, config_path: Path, site: str, *, timeout: float = 120) -> dict:
    """Runs the driver on `config` (the page and player URLs of `site` filled in); its report."""
    config = {
        "page": f"{site}/index.html",
        "hls": f"{site}/hls.min.js",
        "dash": f"{site}/dash.all.min.js",
        **config,
    }
    config_path.write_text(json.dumps(config))
    result = subprocess.run(
        ["node", str(DRIVER), str(config_path)],
        env={**os.environ, "KILN_CHROMIUM": CHROMIUM},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


# Hop-by-hop headers, and the ones the relay recomputes: never copied across.
_NOT_RELAYED = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


@contextmanager
def recording_relay(target: str) -> Iterator[tuple[str, list[str]]]:
    """An HTTP relay in front of `target` (kiln's origin) on a port of its own, recording the
    path of every request a player makes through it, in order: a test can wait until a
    player has fetched a given file. Yields (the relay's origin, the paths seen so far)."""
    seen: list[str] = []
    client = httpx.Client(base_url=target, timeout=30)

    class Relay(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            """Quiet: the list of paths is the record."""

        def _relay(self, method: str) -> None:
            seen.append(self.path.split("?", 1)[0])
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _NOT_RELAYED}
            answer = client.request(method, self.path, headers=headers)
            body = answer.content if method != "HEAD" else b""
            self.send_response(answer.status_code)
            for name, value in answer.headers.multi_items():
                if name.lower() not in _NOT_RELAYED and name.lower() != "content-encoding":
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer.content)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            self._relay("GET")

        def do_HEAD(self) -> None:
            self._relay("HEAD")

        def do_OPTIONS(self) -> None:
            self._relay("OPTIONS")

    relay = ThreadingHTTPServer(("127.0.0.1", 0), Relay)
    thread = threading.Thread(target=relay.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{relay.server_address[1]}", seen
    finally:
        relay.shutdown()
        relay.server_close()
        thread.join()
        client.close()
