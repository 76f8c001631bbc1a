"""Terminal jobs notify their webhook_url: signed (Standard Webhooks), retried until taken."""

from __future__ import annotations

import base64
import http.server
import json
import threading

import pytest
from kiln.v1 import job_pb2, job_service_pb2
from standardwebhooks.webhooks import Webhook

from .cluster import Cluster
from .jobs import create_job

SECRET = "whsec_" + base64.b64encode(b"kiln-e2e-webhook-secret-32-bytes").decode()


class Receiver:
    """A loopback HTTP endpoint that fails the first `failures` posts, then accepts."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.arrived = threading.Condition()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.arrived:
                    receiver.requests.append(
                        ({k.lower(): v for k, v in self.headers.items()}, body)
                    )
                    status = 500 if len(receiver.requests) <= receiver.failures else 204
                    receiver.arrived.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/kiln"

    def wait_for(self, count: int, timeout: float) -> list[tuple[dict[str, str], bytes]]:
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.requests) >= count, timeout), (
                self.requests
            )
            return list(self.requests)


@pytest.fixture(scope="module")
def hook_cluster(backend_url, tmp_path_factory, media_root):
    cluster = Cluster(
        backend_url,
        tmp_path_factory.mktemp("hooks"),
        media_root,
        settings=dict(KILN_WEBHOOK_ALLOW_HOSTS="127.0.0.1", KILN_WEBHOOK_SECRET=SECRET),
    )
    try:
        server = cluster.start_server()
        cluster.start_worker(server)
        yield cluster, server
    finally:
        cluster.stop()


def create(server, auth, media_root, url: str, **fields) -> job_pb2.Job:
    return create_job(
        server, auth, f"file://{media_root / 'clip2s.mp4'}", webhook_url=url, **fields
    )


def test_completed_job_is_delivered_signed_and_retried(hook_cluster, media_root):
    cluster, server = hook_cluster
    auth = (("authorization", f"Bearer {cluster.create_key('org_hooks')}"),)
    receiver = Receiver(failures=1)
    job = create(server, auth, media_root, receiver.url)
    (first, second) = receiver.wait_for(2, timeout=60)

    verifier = Webhook(SECRET)
    for headers, body in (first, second):
        payload = verifier.verify(body, headers)  # raises on a bad signature
        assert payload["type"] == "job.completed"
        assert payload["data"]["job"]["id"] == job.id
        assert payload["data"]["job"]["status"] == "JOB_STATUS_COMPLETED"
    # A retry is the same message: receivers deduplicate by webhook-id.
    assert first[0]["webhook-id"] == second[0]["webhook-id"]
    assert first[1] == second[1]
    # A tampered body fails verification.
    with pytest.raises(Exception):  # noqa: B017
        verifier.verify(first[1].replace(b"completed", b"failed"), first[0])


def test_canceled_job_notifies_too(hook_cluster, media_root):
    cluster, server = hook_cluster
    auth = (("authorization", f"Bearer {cluster.create_key('org_hooks')}"),)
    receiver = Receiver(failures=0)
    job = create(server, auth, media_root, receiver.url, delayed_start=True)
    server.job_stub().Cancel(job_service_pb2.CancelRequest(id=job.id), metadata=auth)
    ((headers, body),) = receiver.wait_for(1, timeout=30)
    assert json.loads(body)["type"] == "job.canceled"
    assert headers["content-type"] == "application/json"
