"""The in-repo Pub/Sub fake, driven by the real google-cloud-pubsub client."""

from __future__ import annotations

import os
import queue
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from google.api_core.exceptions import AlreadyExists, NotFound
from google.cloud import pubsub_v1
from google.pubsub_v1.types import PullRequest, StreamingPullRequest

from tests.pubsub_fake import PubSubFake, running_fake

REPO = Path(__file__).resolve().parents[2]
PROJECT = "kiln-test"
WAIT = 10.0  # upper bound of every wait; none is reached when the fake works


@dataclass
class Clients:
    fake: PubSubFake
    publisher: pubsub_v1.PublisherClient
    subscriber: pubsub_v1.SubscriberClient

    def topic(self, name: str) -> str:
        return self.publisher.create_topic(name=f"projects/{PROJECT}/topics/{name}").name

    def subscription(self, name: str, topic: str, **fields: object) -> str:
        request = {"name": f"projects/{PROJECT}/subscriptions/{name}", "topic": topic, **fields}
        return self.subscriber.create_subscription(request=request).name

    def publish(self, topic: str, data: bytes, **attributes: str) -> str:
        return self.publisher.publish(topic, data, **attributes).result(timeout=WAIT)

    def pull(self, subscription: str, max_messages: int = 10, timeout: float = WAIT) -> list:
        response = self.subscriber.pull(
            subscription=subscription, max_messages=max_messages, timeout=timeout
        )
        return list(response.received_messages)


@pytest.fixture
def pubsub(monkeypatch) -> Iterator[Clients]:
    with running_fake(seed=0) as fake:
        monkeypatch.setenv("PUBSUB_EMULATOR_HOST", fake.host)
        publisher = pubsub_v1.PublisherClient()
        subscriber = pubsub_v1.SubscriberClient()
        try:
            yield Clients(fake, publisher, subscriber)
        finally:
            subscriber.close()
            publisher.stop()


def test_publish_pull_ack_and_errors(pubsub: Clients):
    topic = pubsub.topic("jobs")
    sub = pubsub.subscription("workers", topic)
    ids = [pubsub.publish(topic, f"job-{n}".encode(), n=str(n)) for n in range(3)]
    assert len(set(ids)) == 3

    received = pubsub.pull(sub)
    assert sorted((m.message.data, dict(m.message.attributes)) for m in received) == [
        (f"job-{n}".encode(), {"n": str(n)}) for n in range(3)
    ]
    assert {m.message.message_id for m in received} == set(ids)
    assert all(m.message.publish_time for m in received)
    assert all(m.delivery_attempt == 0 for m in received)  # no dead-letter policy
    assert pubsub.fake.outstanding(sub) == 3
    pubsub.subscriber.acknowledge(subscription=sub, ack_ids=[m.ack_id for m in received])
    assert pubsub.fake.outstanding(sub) == 0
    assert sorted(pubsub.fake.acked(sub)) == sorted(ids)
    assert pubsub.pull(sub, timeout=0.5) == []
    assert [m.data for m in pubsub.fake.published(topic)] == [b"job-0", b"job-1", b"job-2"]

    with pytest.raises(AlreadyExists):
        pubsub.topic("jobs")
    with pytest.raises(AlreadyExists):
        pubsub.subscription("workers", topic)
    with pytest.raises(NotFound, match="nope"):
        pubsub.publish(f"projects/{PROJECT}/topics/nope", b"x")
    with pytest.raises(NotFound, match="missing"):
        pubsub.subscription("orphan", f"projects/{PROJECT}/topics/missing")
    assert pubsub.subscriber.get_subscription(subscription=sub).ack_deadline_seconds == 10


def test_an_expired_lease_is_delivered_again(pubsub: Clients):
    topic = pubsub.topic("jobs")
    sub = pubsub.subscription("workers", topic, ack_deadline_seconds=1)
    message_id = pubsub.publish(topic, b"slow")
    [first] = pubsub.pull(sub)
    started = time.monotonic()

    [again] = pubsub.pull(sub)  # blocks until the 1 s lease expires
    assert time.monotonic() - started >= 0.9
    assert again.message.message_id == message_id
    assert again.ack_id != first.ack_id
    assert pubsub.fake.delivery_count(sub, message_id) == 2
    pubsub.subscriber.acknowledge(subscription=sub, ack_ids=[again.ack_id])
    assert pubsub.fake.acked(sub) == [message_id]


def test_modify_ack_deadline_extends_and_stale_ack_ids_are_ignored(pubsub: Clients):
    topic = pubsub.topic("jobs")
    sub = pubsub.subscription("workers", topic, ack_deadline_seconds=1)
    message_id = pubsub.publish(topic, b"long")
    [first] = pubsub.pull(sub)
    started = time.monotonic()
    while time.monotonic() - started < 1.5:  # well past the 1 s ack deadline
        pubsub.subscriber.modify_ack_deadline(
            subscription=sub, ack_ids=[first.ack_id], ack_deadline_seconds=5
        )
        assert pubsub.pull(sub, timeout=0.4) == []
    assert pubsub.fake.outstanding(sub) == 1
    assert pubsub.fake.delivery_count(sub, message_id) == 1

    # Nack, take the redelivery, then act on the first delivery's ack id: ignored.
    pubsub.subscriber.modify_ack_deadline(
        subscription=sub, ack_ids=[first.ack_id], ack_deadline_seconds=0
    )
    [second] = pubsub.pull(sub)
    assert second.message.message_id == message_id
    assert second.ack_id != first.ack_id
    pubsub.subscriber.modify_ack_deadline(
        subscription=sub, ack_ids=[first.ack_id], ack_deadline_seconds=0
    )
    pubsub.subscriber.acknowledge(subscription=sub, ack_ids=[first.ack_id])
    assert pubsub.fake.outstanding(sub) == 1
    assert pubsub.fake.backlog(sub) == 0
    assert pubsub.fake.acked(sub) == []
    pubsub.subscriber.acknowledge(subscription=sub, ack_ids=[second.ack_id])
    assert pubsub.fake.acked(sub) == [message_id]
    assert pubsub.fake.outstanding(sub) == 0


def test_a_nack_makes_the_message_available_at_once(pubsub: Clients):
    topic = pubsub.topic("jobs")
    sub = pubsub.subscription("workers", topic, ack_deadline_seconds=600)
    message_id = pubsub.publish(topic, b"retry me")
    [first] = pubsub.pull(sub)
    assert pubsub.fake.backlog(sub) == 0
    pubsub.subscriber.modify_ack_deadline(
        subscription=sub, ack_ids=[first.ack_id], ack_deadline_seconds=0
    )
    assert pubsub.fake.backlog(sub) == 1
    started = time.monotonic()
    [again] = pubsub.pull(sub)
    assert time.monotonic() - started < 1
    assert again.message.message_id == message_id
    assert pubsub.fake.delivery_count(sub, message_id) == 2


def test_dead_letter_after_max_delivery_attempts(pubsub: Clients):
    topic = pubsub.topic("jobs")
    dead = pubsub.topic("jobs-dead")
    dead_sub = pubsub.subscription("jobs-dead", dead)
    sub = pubsub.subscription(
        "workers",
        topic,
        dead_letter_policy={"dead_letter_topic": dead, "max_delivery_attempts": 2},
    )
    policy = pubsub.subscriber.get_subscription(subscription=sub).dead_letter_policy
    assert (policy.dead_letter_topic, policy.max_delivery_attempts) == (dead, 2)
    message_id = pubsub.publish(topic, b"poison", job="j1")

    for attempt in (1, 2):
        [received] = pubsub.pull(sub)
        assert received.message.message_id == message_id
        assert received.delivery_attempt == attempt
        pubsub.subscriber.modify_ack_deadline(
            subscription=sub, ack_ids=[received.ack_id], ack_deadline_seconds=0
        )

    [forwarded] = pubsub.pull(dead_sub)
    assert forwarded.message.data == b"poison"
    assert forwarded.message.attributes["job"] == "j1"
    assert [m.message_id for m in pubsub.fake.dead_lettered(sub)] == [message_id]
    assert [m.data for m in pubsub.fake.published(dead)] == [b"poison"]
    assert pubsub.pull(sub, timeout=0.5) == []
    assert pubsub.fake.backlog(sub) == pubsub.fake.outstanding(sub) == 0


def test_delivery_order_is_shuffled(pubsub: Clients):
    topic = pubsub.topic("jobs")
    sub = pubsub.subscription("workers", topic)
    futures = [pubsub.publisher.publish(topic, str(n).encode()) for n in range(50)]
    published = [f.result(timeout=WAIT) for f in futures]
    assert [m.message_id for m in pubsub.fake.published(topic)] == published

    delivered: list[str] = []
    while len(delivered) < 50:
        batch = pubsub.pull(sub, max_messages=50)
        assert batch, "the backlog ran dry before all 50 arrived"
        pubsub.subscriber.acknowledge(subscription=sub, ack_ids=[m.ack_id for m in batch])
        delivered += [m.message.data.decode() for m in batch]
    assert sorted(delivered, key=int) == [str(n) for n in range(50)]
    assert delivered != [str(n) for n in range(50)]
    assert pubsub.pull(sub, timeout=0.3) == []


def test_streaming_pull_respects_max_outstanding(pubsub: Clients):
    topic = pubsub.topic("jobs")
    sub = pubsub.subscription("workers", topic)
    futures = [pubsub.publisher.publish(topic, str(n).encode()) for n in range(20)]
    published = {f.result(timeout=WAIT) for f in futures}
    received: list[str] = []
    lock = threading.Lock()

    def callback(message) -> None:
        with lock:
            received.append(message.message_id)
        message.ack()

    flow = pubsub_v1.types.FlowControl(max_messages=2)
    streaming = pubsub.subscriber.subscribe(sub, callback, flow_control=flow)
    try:
        assert pubsub.fake.wait_until(lambda: len(pubsub.fake.acked(sub)) == 20, WAIT)
    finally:
        streaming.cancel()
        streaming.result(timeout=WAIT)
    assert set(received) == published
    assert set(pubsub.fake.acked(sub)) == published
    assert 1 <= pubsub.fake.max_outstanding(sub) <= 2
    assert pubsub.fake.backlog(sub) == pubsub.fake.outstanding(sub) == 0


def test_streaming_pull_holds_back_beyond_max_outstanding_messages(pubsub: Clients):
    """The fake itself enforces the stream's limit (the high-level client also throttles)."""
    topic = pubsub.topic("jobs")
    sub = pubsub.subscription("workers", topic)
    for n in range(5):
        pubsub.publish(topic, str(n).encode())
    requests: queue.Queue[StreamingPullRequest | None] = queue.Queue()
    requests.put(
        StreamingPullRequest(
            subscription=sub, stream_ack_deadline_seconds=60, max_outstanding_messages=2
        )
    )
    call = pubsub.subscriber.transport.streaming_pull(iter(requests.get, None))
    try:
        leased: list[str] = []
        while len(leased) < 2:
            leased += [m.ack_id for m in next(call).received_messages]
        assert pubsub.fake.outstanding(sub) == 2
        assert pubsub.fake.backlog(sub) == 3
        requests.put(StreamingPullRequest())  # a keep-alive changes nothing
        requests.put(StreamingPullRequest(ack_ids=leased[:1]))  # acks on the stream count too
        [third] = next(call).received_messages
        assert pubsub.fake.backlog(sub) == 2
        pubsub.subscriber.modify_ack_deadline(
            subscription=sub, ack_ids=[leased[1], third.ack_id], ack_deadline_seconds=0
        )
        assert len(next(call).received_messages) == 2  # both nacks freed room at once
    finally:
        requests.put(None)
        call.cancel()
    assert pubsub.fake.max_outstanding(sub) == 2


def test_a_cancelled_pull_hands_nothing_out(pubsub: Clients):
    topic = pubsub.topic("jobs")
    dead = pubsub.topic("jobs-dead")
    sub = pubsub.subscription(
        "workers",
        topic,
        dead_letter_policy={"dead_letter_topic": dead, "max_delivery_attempts": 5},
    )
    # The generated transport's grpc callable gives a cancellable call of the real client.
    call = pubsub.subscriber.transport.pull.future(PullRequest(subscription=sub, max_messages=1))
    assert pubsub.fake.wait_until(lambda: pubsub.fake.waiting_pulls(sub) == 1, WAIT)
    call.cancel()
    assert pubsub.fake.wait_until(lambda: pubsub.fake.waiting_pulls(sub) == 0, WAIT)

    message_id = pubsub.publish(topic, b"after the cancel")
    assert pubsub.fake.outstanding(sub) == 0
    [received] = pubsub.pull(sub)
    assert received.message.message_id == message_id
    assert received.delivery_attempt == 1
    assert pubsub.fake.delivery_count(sub, message_id) == 1


def test_the_fake_runs_as_a_process(monkeypatch):
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'gen'}"}
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.pubsub_fake", "--port", "0", "--seed", "1"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        readable, _, _ = select.select([process.stdout], [], [], WAIT)
        assert readable, "no ready line"
        line = process.stdout.readline().strip()
        prefix = "pubsub fake listening on "
        assert line.startswith(prefix), line
        monkeypatch.setenv("PUBSUB_EMULATOR_HOST", line.removeprefix(prefix))

        publisher = pubsub_v1.PublisherClient()
        with pubsub_v1.SubscriberClient() as subscriber:
            topic = publisher.create_topic(name=f"projects/{PROJECT}/topics/t").name
            sub = subscriber.create_subscription(
                request={"name": f"projects/{PROJECT}/subscriptions/s", "topic": topic}
            ).name
            message_id = publisher.publish(topic, b"round trip").result(timeout=WAIT)
            response = subscriber.pull(subscription=sub, max_messages=1, timeout=WAIT)
            [received] = response.received_messages
            assert received.message.message_id == message_id
            subscriber.acknowledge(subscription=sub, ack_ids=[received.ack_id])
        publisher.stop()

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=WAIT) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
