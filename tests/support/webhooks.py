"""A receiver that always fails, a delivery queued for it, and a sender to send it."""

from __future__ import annotations

import base64
import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from common.input_policy import InputPolicy
from server.domain.new_records import NewWebhookDelivery
from server.store.store import Store
from server.webhooks.sender import RetryPolicy, WebhookSender

from . import ORG
from .rows import make_job

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


class AlwaysFailing(http.server.BaseHTTPRequestHandler):
    """Answers every POST with 503; `hits` counts them (reset by `failing_receiver`)."""

    hits = 0

    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:
        type(self).hits += 1
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()


@contextmanager
def failing_receiver() -> Iterator[str]:
    """The URL of an AlwaysFailing server on loopback, for as long as the block runs."""
    AlwaysFailing.hits = 0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), AlwaysFailing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()


async def queue_delivery(store: Store, url: str) -> str:
    """A job with one pending delivery to `url`, due now; returns the job's id."""
    job = make_job()
    async with store.transaction() as tx:
        await tx.keys.ensure_organization(ORG)
        await tx.jobs.insert_job(job, [])
        await tx.webhook_deliveries.insert_delivery(
            NewWebhookDelivery(
                id="msg_test_" + job.id,
                job_id=job.id,
                organization_id=None,
                event_type="",
                url=url,
                payload='{"type":"job.completed"}',
                created_at=datetime.now(UTC),
            )
        )
    return job.id


def sender(store: Store, allow: list[str], max_attempts: int = 2) -> WebhookSender:
    return WebhookSender(
        store,
        SECRET,
        InputPolicy.from_lists([], allow),
        retry=RetryPolicy(max_attempts=max_attempts),
        timeout_seconds=5,
    )
