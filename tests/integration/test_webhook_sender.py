"""The webhook sender against a real database and a real loopback receiver."""

from __future__ import annotations

import base64
import http.server
import threading
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks.webhooks import Webhook

from common.input_policy import InputPolicy
from server.store.models import WebhookDelivery
from server.webhooks.sender import RetryPolicy, WebhookSender
from tests.http_origins import send, twin_origins

from .test_store import ORG, make_job

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


class AlwaysFailing(http.server.BaseHTTPRequestHandler):
    hits = 0

    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:
        type(self).hits += 1
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def failing_receiver():
    AlwaysFailing.hits = 0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), AlwaysFailing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()


async def queue_delivery(store, url: str) -> str:
    job = make_job()
    async with store.transaction() as tx:
        await tx.ensure_organization(ORG)
        await tx.insert_job(job, [])
        await tx.insert_delivery(
            WebhookDelivery(
                id="msg_test_" + job.id,
                job_id=job.id,
                url=url,
                payload='{"type":"job.completed"}',
                status="PENDING",
                attempts=0,
                next_attempt_at=datetime.now(UTC),
                last_error="",
                created_at=datetime.now(UTC),
            )
        )
    return job.id


async def deliveries(store, job_id):
    async with store.transaction() as tx:
        return await tx.deliveries_for(job_id)


async def make_due(store, delivery) -> None:
    async with store.transaction() as tx:
        await tx.finish_delivery(
            delivery.id,
            status="PENDING",
            attempts=delivery.attempts,
            next_attempt_at=datetime.now(UTC),
            error=delivery.last_error,
        )


def sender(store, allow: list[str], max_attempts: int = 2) -> WebhookSender:
    return WebhookSender(
        store,
        SECRET,
        InputPolicy.from_lists([], allow),
        retry=RetryPolicy(max_attempts=max_attempts),
        timeout_seconds=5,
    )


async def test_failing_receiver_is_retried_with_backoff_then_given_up(store, failing_receiver):
    job_id = await queue_delivery(store, failing_receiver)
    webhooks = sender(store, ["127.0.0.1"])
    assert await webhooks.send_due() == 1
    (delivery,) = await deliveries(store, job_id)
    assert (delivery.status, delivery.attempts, delivery.last_error) == (
        "PENDING",
        1,
        "HTTP 503",
    )
    next_at = delivery.next_attempt_at.replace(tzinfo=UTC)
    assert next_at > datetime.now(UTC)  # backing off, not due yet
    assert await webhooks.send_due() == 0

    await make_due(store, delivery)
    assert await webhooks.send_due() == 1
    (delivery,) = await deliveries(store, job_id)
    assert (delivery.status, delivery.attempts) == ("FAILED", 2)
    assert await webhooks.send_due() == 0
    assert AlwaysFailing.hits == 2


async def test_private_destination_is_refused_at_delivery(store, failing_receiver):
    job_id = await queue_delivery(store, failing_receiver)
    webhooks = sender(store, [], max_attempts=1)  # loopback not allowlisted
    await webhooks.send_due()
    (delivery,) = await deliveries(store, job_id)
    assert delivery.status == "FAILED"
    assert delivery.last_error.startswith("refused:")
    assert AlwaysFailing.hits == 0


async def test_delivery_connects_only_to_the_address_it_checked(store):
    """A name that answers an allowlisted address first and an internal one afterwards
    (rebinding): the POST goes to the checked address, with the name as Host."""
    allowed, internal = twin_origins("127.0.0.2", "127.0.0.1")
    for origin in (allowed, internal):
        origin.routes["/hook"] = lambda handler, _: send(handler, 204, b"")
    answers = iter([["127.0.0.2"]])

    async def rebinding(host: str, port: int) -> list[str]:
        return next(answers, ["127.0.0.1"])

    try:
        job_id = await queue_delivery(store, f"http://hooks.test:{allowed.port}/hook")
        webhooks = WebhookSender(
            store,
            SECRET,
            InputPolicy.from_lists([], ["127.0.0.2"]),
            retry=RetryPolicy(max_attempts=1),
            timeout_seconds=5,
            resolver=rebinding,
        )
        assert await webhooks.send_due() == 1
        (delivery,) = await deliveries(store, job_id)
        assert delivery.status == "DELIVERED"
        assert [r.headers["host"] for r in allowed.log] == [f"hooks.test:{allowed.port}"]
        assert internal.log == []
    finally:
        allowed.close()
        internal.close()


def test_backoff_doubles_and_is_capped():
    retry = RetryPolicy()
    assert [retry.backoff(n).total_seconds() for n in (1, 2, 3, 4)] == [1, 2, 4, 8]
    assert retry.backoff(30).total_seconds() == 3600
    assert retry.backoff(10_000).total_seconds() == 3600


def test_retries_go_on_for_the_window_then_give_up():
    """24 h by default: the last retry is the last one due inside the window."""
    retry = RetryPolicy()
    created = datetime(2030, 1, 1, tzinfo=UTC)
    moment, attempts = created, 0
    while (next_at := retry.next_attempt(attempts + 1, created, moment)) is not None:
        attempts, moment = attempts + 1, next_at
    assert moment <= created + timedelta(hours=24) < moment + retry.backoff(attempts + 1)
    # 1 s doubling to the 1 h cap: 12 retries to reach it, then hourly.
    assert 30 <= attempts <= 40
    capped = RetryPolicy(max_attempts=3)
    assert capped.next_attempt(2, created, created) is not None
    assert capped.next_attempt(3, created, created) is None


def test_signature_verifies_with_the_shared_secret():
    moment = datetime.now(UTC)
    webhooks = WebhookSender(
        None, SECRET, InputPolicy.from_lists([], []), retry=RetryPolicy(), timeout_seconds=1
    )
    signature = webhooks.server_signer.sign("msg_1", moment, '{"a":1}')
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(int(moment.timestamp())),
        "webhook-signature": signature,
    }
    assert Webhook(SECRET).verify('{"a":1}', headers) == {"a": 1}
