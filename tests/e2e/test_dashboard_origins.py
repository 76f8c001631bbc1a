"""The dashboard's Origins page in a real browser (Debian's chromium through playwright-core).

One server, no worker; an HTTP origin served by the test on loopback. The Node driver
(tests/e2e/dashboard/origins_e2e.mjs) creates an http origin from the page's form and sees it
listed, sends an S3 origin with a bad bucket name and a secret typed in (refused by field name;
the secret left in no field and nowhere in the page), and deletes the origin after the confirm.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.http_origins import Origin as HttpServer
from tests.http_origins import send
from tests.support.browser import require_browser

from .cluster import REPO, running_cluster

DRIVER = REPO / "tests" / "e2e" / "dashboard" / "origins_e2e.mjs"
SECRET = "browser-secret-4c8e1a9d"


@pytest.mark.slow
def test_an_http_origin_is_created_listed_and_deleted_from_the_page(tmp_path, media_root):
    require_browser("dashboard origins")

    def media_files(handler, _server) -> None:
        send(handler, 200, b"ok\n", "text/plain")

    media = HttpServer(routes={"/media/": media_files})
    root = tmp_path / "cluster"
    root.mkdir()
    # The test's HTTP server is on loopback: allowed explicitly, as an operator would.
    settings = {"KILN_INPUT_ALLOW_HOSTS": "127.0.0.1"}
    try:
        with running_cluster(
            f"sqlite:///{tmp_path / 'kiln.db'}", root, media_root, settings=settings
        ) as (cluster, server):
            key = cluster.create_key("org_dashboard_origins")
            arguments = [server.http_url, key, media.url("/media"), SECRET]
            result = subprocess.run(
                ["node", str(DRIVER), *arguments, str(tmp_path)],
                capture_output=True,
                text=True,
                timeout=90,
                check=False,
            )
            print(result.stdout)
            assert result.returncode == 0, result.stderr + "\n" + cluster.logs()
            assert SECRET not in cluster.logs()
    finally:
        media.close()
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["ok"] and report["originId"].startswith("ori_")
    # The server tried the origin created from the form before saving it.
    assert media.requests_for("/media/")
