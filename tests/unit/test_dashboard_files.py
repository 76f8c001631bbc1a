"""Which files /ui/ serves: the dashboard's static folder and a fixed table of player builds."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.api.dashboard_files import DashboardFiles


@pytest.fixture
def dashboard(tmp_path: Path) -> DashboardFiles:
    static = tmp_path / "dashboard" / "static"
    (static / "img").mkdir(parents=True)
    (static / "index.html").write_text("<!doctype html>")
    (static / "app.js").write_text("export {}")
    (static / "style.css").write_text("body {}")
    (static / "img" / "logo.svg").write_text("<svg/>")
    (static / "notes.txt").write_text("unknown type")
    hls = tmp_path / "dashboard" / "node_modules" / "hls.js" / "dist"
    hls.mkdir(parents=True)
    (hls / "hls.min.js").write_text("var Hls")
    (hls / "hls.js").write_text("var Hls")
    (tmp_path / "dashboard" / "package.json").write_text("{}")
    (tmp_path / "secret.js").write_text("secret")
    (static / "escape.js").symlink_to(tmp_path / "secret.js")
    return DashboardFiles(tmp_path / "dashboard")


@pytest.mark.parametrize(
    ("path", "name", "content_type"),
    [
        ("/ui/", "index.html", "text/html; charset=utf-8"),
        ("/ui/index.html", "index.html", "text/html; charset=utf-8"),
        ("/ui/app.js", "app.js", "text/javascript; charset=utf-8"),
        ("/ui/style.css", "style.css", "text/css; charset=utf-8"),
        ("/ui/img/logo.svg", "logo.svg", "image/svg+xml"),
        ("/ui/vendor/hls.min.js", "hls.min.js", "text/javascript; charset=utf-8"),
    ],
)
def test_serves_static_files_and_player_builds(dashboard, path, name, content_type):
    found = dashboard.find(path)
    assert found is not None
    assert found.path.name == name
    assert found.content_type == content_type


@pytest.mark.parametrize(
    "path",
    [
        "/ui/../package.json",
        "/ui/../../secret.js",
        "/ui/img/../../package.json",
        "/ui//etc/passwd",
        "/ui/escape.js",  # a symlink leading out of the folder
        "/ui/notes.txt",  # a type the dashboard does not use
        "/ui/missing.js",
        "/ui/img",
        "/ui/vendor/hls.js",  # only the table's builds, not whatever node_modules holds
        "/ui/vendor/../../package.json",
        "/ui/vendor/dash.all.min.js",  # in the table but not installed
        "/ui/app.js\x00.css",
        "/ui/..\\package.json",
    ],
)
def test_refuses_anything_else(dashboard, path):
    assert dashboard.find(path) is None
