"""The webhook sender against a real database and a real loopback receiver."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from standardwebhooks.webhooks import Webhook

from common.input_policy import InputPolicy
from server.webhooks.sender import RetryPolicy, WebhookSender
from tests.http_origins import send, twin_origins
from tests.support.webhooks import SECRET, AlwaysFailing, queue_delivery, sender


async def deliveries(store, job_id):
    async with store.transaction() as tx:
        return await tx.webhook_deliveries.deliveries_for(job_id)


async def make_due(store, delivery) -> None:
    async with store.transaction() as tx:
        await tx.webhook_deliveries.finish_delivery(
            delivery.id,
            status="PENDING",
            attempts=delivery.attempts,
            next_attempt_at=datetime.now(UTC),
            error=delivery.last_error,
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
