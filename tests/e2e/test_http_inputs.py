"""http(s) inputs: read in place when the origin honours byte ranges, staged once otherwise."""

from __future__ import annotations

import http.server
import re
import threading
from functools import partial
from pathlib import Path

import pytest
from kiln.v1 import job_pb2

from .cluster import Cluster
from .jobs import create_job, run_to_end


# Inputs are read by the worker: one database kind is enough.
@pytest.fixture(scope="module")
def backend_url(sqlite_backend_url):
    return sqlite_backend_url


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files with single byte-range support, and counts requests per path."""

    hits: dict[str, int]
    ranged: dict[str, int]

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        self.hits[self.path] = self.hits.get(self.path, 0) + 1
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        path = Path(self.translate_path(self.path))
        if not match or not path.is_file():
            super().do_GET()
            return
        self.ranged[self.path] = self.ranged.get(self.path, 0) + 1
        data = path.read_bytes()
        start = int(match[1])
        end = int(match[2]) if match[2] else len(data) - 1
        body = data[start : end + 1]
        self.send_response(206)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class PlainHandler(http.server.SimpleHTTPRequestHandler):
    """No byte ranges at all: every GET gets the whole file with 200."""

    hits: dict[str, int]

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        self.hits[self.path] = self.hits.get(self.path, 0) + 1
        super().do_GET()


def serve(handler_class, directory: Path):
    handler_class.hits = {}
    handler_class.ranged = {}
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), partial(handler_class, directory=str(directory))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server


@pytest.fixture(scope="module")
def origins(media_root):
    ranged = serve(RangeHandler, media_root)
    plain = serve(PlainHandler, media_root)
    yield ranged, plain
    ranged.shutdown()
    plain.shutdown()


@pytest.fixture(scope="module")
def open_cluster(backend_url, tmp_path_factory, media_root):
    """A cluster that allowlists loopback, as a self-hoster would for an internal origin."""
    root = tmp_path_factory.mktemp("http-cluster")
    cluster = Cluster(
        backend_url, root, media_root, settings=dict(KILN_INPUT_ALLOW_HOSTS="127.0.0.1")
    )
    try:
        server = cluster.start_server()
        cluster.start_worker(server)
        yield cluster, server
    finally:
        cluster.stop()


def run_http_job(cluster, server, url: str) -> job_pb2.Job:
    auth = (("authorization", f"Bearer {cluster.create_key('org_http')}"),)
    return run_to_end(server, auth, create_job(server, auth, url).id)


def test_range_origin_is_read_in_place(open_cluster, origins):
    cluster, server = open_cluster
    ranged, _ = origins
    url = f"http://127.0.0.1:{ranged.server_address[1]}/clip2s.mp4"
    ranged_before = RangeHandler.ranged.get("/clip2s.mp4", 0)
    job = run_http_job(cluster, server, url)
    assert job.status == job_pb2.JOB_STATUS_COMPLETED, job.error
    assert job.input_info.supports_byte_ranges
    assert job.outputs[0].files[0].height == 240
    # FFmpeg itself asked for ranges (it seeks to the moov atom), not only our check.
    assert RangeHandler.ranged.get("/clip2s.mp4", 0) - ranged_before >= 2


def test_origin_without_ranges_is_staged(open_cluster, origins):
    cluster, server = open_cluster
    _, plain = origins
    url = f"http://127.0.0.1:{plain.server_address[1]}/clip2s.mp4"
    hits_before = PlainHandler.hits.get("/clip2s.mp4", 0)
    job = run_http_job(cluster, server, url)
    assert job.status == job_pb2.JOB_STATUS_COMPLETED, job.error
    assert not job.input_info.supports_byte_ranges
    # One range check and one download for the probe, the same for the one transcode task.
    assert PlainHandler.hits["/clip2s.mp4"] - hits_before == 4


def test_missing_remote_input_is_rejected(open_cluster, origins):
    cluster, server = open_cluster
    ranged, _ = origins
    job = run_http_job(cluster, server, f"http://127.0.0.1:{ranged.server_address[1]}/nope.mp4")
    assert job.status == job_pb2.JOB_STATUS_REJECTED
    assert job.error.code == "INPUT_UNREADABLE"
    assert "404" in job.error.message
