"""The Pub/Sub dispatch against Google's Pub/Sub emulator with the real client: the outbox is
published only after commit, survives a crash between commit and publish and a failed
publish, and dead letters reach the handler.

What was published is read from an audit subscription made on each topic before the
dispatch starts; what the dispatch's own subscriber received and acked, from that client's
log of its calls (tests/support/pubsub_audit.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator

import pytest
from google.api_core import exceptions as api_exceptions
from google.pubsub_v1 import types

from common.pubsub import PubSubSettings, TaskMessage, publisher_client
from server.dispatch.pubsub import PubSubDispatch
from server.domain import ids
from server.store.models import Task
from server.store.store import Store, now
from tests.support.pubsub_audit import (
    Audit,
    SubscriberCalls,
    kiln_topics,
    recording_subscriber_calls,
)
from tests.support.pubsub_emulator import PubSubEmulator

PREMIUM, STANDARD, ECONOMY = 3, 2, 1


def settings_for(emulator: PubSubEmulator, **changes) -> PubSubSettings:
    """A project of its own per test: the emulator serves the whole module. Six deliveries,
    not the default five, so that a count the handler gets is seen to come from here."""
    return PubSubSettings(
        project=f"kiln-it-{uuid.uuid4().hex[:8]}",
        prefix="tasks",
        emulator_host=emulator.host,
        max_deliveries=6,
        **changes,
    )


@pytest.fixture
def settings(pubsub_emulator: PubSubEmulator) -> PubSubSettings:
    return settings_for(pubsub_emulator)


@pytest.fixture
def audit(pubsub_emulator: PubSubEmulator) -> Iterator[Audit]:
    audit = Audit(pubsub_emulator.host)
    try:
        yield audit
    finally:
        audit.close()


def ready_task(priority: int = STANDARD) -> Task:
    return Task(
        id=ids.task_id(),
        job_id=ids.job_id(),
        output_id=None,
        kind="PROBE",
        status="QUEUED",
        priority=priority,
        attempts=0,
        lease_token=0,
        worker_id="",
        created_at=now(),
    )


async def nothing_to_handle(task_id: str, deliveries: int) -> None:
    raise AssertionError(f"no dead letter expected, got {task_id}")


async def outbox_size(store: Store) -> int:
    async with store.transaction() as tx:
        return await tx.task_outbox.outbox_size()


async def eventually(condition: Callable[[], Awaitable[bool]], timeout: float = 10) -> bool:
    """Whether `condition` comes to hold within `timeout` (polled)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await condition():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def outbox_emptied(store: Store, timeout: float = 10) -> bool:
    """The drain deletes rows in the transaction that published them, committed just after
    the broker answered: wait for that commit."""

    async def empty() -> bool:
        return await outbox_size(store) == 0

    return await eventually(empty, timeout)


def task_ids(messages: list[types.PubsubMessage]) -> list[str]:
    return [json.loads(message.data)["task_id"] for message in messages]


async def test_committed_tasks_are_published_once_to_their_priority_topic(store, settings, audit):
    audit.watch(*kiln_topics(settings))
    dispatch = PubSubDispatch(store, settings)
    await dispatch.start(nothing_to_handle)
    try:
        premium, standard = ready_task(PREMIUM), ready_task(STANDARD)
        async with store.transaction() as tx:
            await dispatch.tasks_ready(tx, [premium, standard])
        # Rows go once the broker has taken their messages: every Publish has returned.
        assert await outbox_emptied(store)
        [message] = await asyncio.to_thread(audit.wait_for, settings.topic(PREMIUM), 1)
        assert json.loads(message.data) == {"task_id": premium.id, "job_id": premium.job_id}
        assert message.attributes["priority"] == "premium"
        published = await asyncio.to_thread(audit.wait_for, settings.topic(STANDARD), 1)
        assert task_ids(published) == [standard.id]
        for topic in (settings.topic(ECONOMY), settings.dead_letter_topic):
            assert await asyncio.to_thread(audit.messages, topic) == []
    finally:
        await dispatch.stop()


async def test_a_rolled_back_transaction_publishes_nothing(store, settings, audit):
    audit.watch(*kiln_topics(settings))
    dispatch = PubSubDispatch(store, settings)
    await dispatch.start(nothing_to_handle)
    try:
        with pytest.raises(RuntimeError):
            async with store.transaction() as tx:
                await dispatch.tasks_ready(tx, [ready_task()])
                raise RuntimeError("the use case failed after queueing")
        assert await dispatch.drain() == 0
        for topic in kiln_topics(settings):
            assert await asyncio.to_thread(audit.messages, topic) == []
        assert await outbox_size(store) == 0
    finally:
        await dispatch.stop()


async def test_a_crash_between_commit_and_publish_loses_nothing(store, settings, audit):
    # This replica commits and dies before its drain runs: only the outbox row is left.
    crashed = PubSubDispatch(store, settings)
    task = ready_task()
    async with store.transaction() as tx:
        await crashed.tasks_ready(tx, [task])
    assert await outbox_size(store) == 1
    assert audit.topics(settings.project) == []

    topic = settings.topic(STANDARD)
    audit.watch(topic)
    replica = PubSubDispatch(store, settings)
    await replica.start(nothing_to_handle)
    try:
        assert await outbox_emptied(store)
        assert task_ids(await asyncio.to_thread(audit.wait_for, topic, 1)) == [task.id]
    finally:
        await replica.stop()


async def test_a_failed_publish_keeps_the_rows_for_the_next_drain(store, pubsub_emulator):
    # Nobody created the topics: Publish answers NOT_FOUND.
    settings = settings_for(pubsub_emulator, create_topology=False)
    dispatch = PubSubDispatch(store, settings)
    # Clients only: a running drain loop would take the rows (SKIP LOCKED) before this
    # test's own drain could see them fail.
    await dispatch.connect()
    try:
        task = ready_task()
        async with store.transaction() as tx:
            await dispatch.tasks_ready(tx, [task])
        with pytest.raises(api_exceptions.NotFound):
            await dispatch.drain()
        assert await outbox_size(store) == 1
        publisher = publisher_client(settings)
        await publisher.create_topic(name=settings.topic(STANDARD))
        assert await dispatch.drain() == 1
        assert await outbox_size(store) == 0
    finally:
        await dispatch.stop()


async def test_dead_letters_reach_the_handler_and_foreign_messages_are_dropped(store, settings):
    handled: asyncio.Queue[tuple[str, int]] = asyncio.Queue()

    async def handle(task_id: str, deliveries: int) -> None:
        await handled.put((task_id, deliveries))

    dispatch = PubSubDispatch(store, settings)
    with recording_subscriber_calls() as calls:
        await dispatch.start(handle)
        try:
            publisher = publisher_client(settings)
            foreign = types.PubsubMessage(data=b"not a kiln message")
            ours = TaskMessage(ids.task_id(), ids.job_id(), STANDARD).encode()
            published = await publisher.publish(
                topic=settings.dead_letter_topic, messages=[foreign, ours]
            )
            task_id, deliveries = await asyncio.wait_for(handled.get(), timeout=10)
            assert task_id == TaskMessage.decode(ours).task_id
            # Published straight to the dead-letter topic, it carries no delivery count.
            assert deliveries == settings.max_deliveries

            async def both_acked() -> bool:
                seen = SubscriberCalls.from_entries(calls)
                return (
                    seen.acked_message_ids() == set(published.message_ids)
                    and seen.pending_acks == 0
                )

            assert await eventually(both_acked)
            assert handled.empty()
        finally:
            await dispatch.stop()


def hand_back(audit: Audit, subscription: str, times: int, timeout: float = 10) -> list[int]:
    """Receive the one message on `subscription` and hand it back, `times` times; the
    delivery attempts it came with."""
    attempts: list[int] = []
    deadline = time.monotonic() + timeout
    while len(attempts) < times:
        assert time.monotonic() < deadline, f"received {len(attempts)} of {times} deliveries"
        response = audit.subscriber.pull(subscription=subscription, max_messages=1, timeout=5)
        for received in response.received_messages:
            attempts.append(received.delivery_attempt)
            audit.subscriber.modify_ack_deadline(
                subscription=subscription, ack_ids=[received.ack_id], ack_deadline_seconds=0
            )
    return attempts


async def test_a_message_handed_back_max_deliveries_times_reaches_the_handler_with_its_count(
    store, settings, audit
):
    """Pub/Sub's own dead-lettering: the message moves to the dead-letter topic after its
    last delivery, with the count the broker wrote on it."""
    handled: asyncio.Queue[tuple[str, int]] = asyncio.Queue()

    async def handle(task_id: str, deliveries: int) -> None:
        await handled.put((task_id, deliveries))

    dispatch = PubSubDispatch(store, settings)
    await dispatch.start(handle)
    try:
        ours = TaskMessage(ids.task_id(), ids.job_id(), STANDARD).encode()
        await publisher_client(settings).publish(topic=settings.topic(STANDARD), messages=[ours])
        subscription = settings.subscription(STANDARD)
        attempts = await asyncio.to_thread(hand_back, audit, subscription, settings.max_deliveries)
        assert attempts == list(range(1, settings.max_deliveries + 1))
        # Gone from its subscription (the emulator moves a spent message to the dead-letter
        # topic at the next Pull of the subscription, which this is).
        assert await asyncio.to_thread(audit.backlog, subscription) == 0
        task_id, deliveries = await asyncio.wait_for(handled.get(), timeout=10)
        assert (task_id, deliveries) == (TaskMessage.decode(ours).task_id, settings.max_deliveries)
    finally:
        await dispatch.stop()


@pytest.fixture
def silent_broker() -> Iterator[tuple[str, threading.Event]]:
    """An address that accepts connections and never answers: a Publish to it hangs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    connected = threading.Event()
    held: list[socket.socket] = []

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                held.append(listener.accept()[0])
                connected.set()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}", connected
    finally:
        listener.close()
        for connection in held:
            connection.close()


async def test_a_publish_in_flight_leaves_the_database_free(store, silent_broker):
    """While the broker takes its time, the server's other transactions run (on SQLite the
    server has one connection: a drain holding it stalled every request), and the rows
    stay until the broker has taken them."""
    address, connected = silent_broker
    settings = PubSubSettings(
        project="kiln-it", prefix="tasks", emulator_host=address, create_topology=False
    )
    dispatch = PubSubDispatch(store, settings)
    await dispatch.connect()
    try:
        async with store.transaction() as tx:
            await dispatch.tasks_ready(tx, [ready_task()])
        draining = asyncio.create_task(dispatch.drain())
        assert await asyncio.to_thread(connected.wait, 10)  # the Publish is under way
        assert not draining.done()
        assert await asyncio.wait_for(outbox_size(store), timeout=5) == 1
        draining.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await draining
        assert await outbox_size(store) == 1
    finally:
        async with store.transaction() as tx:  # else stop()'s last drain would wait 30 s
            await tx.task_outbox.forget_outbox(await tx.task_outbox.peek_outbox(10))
        await dispatch.stop()
