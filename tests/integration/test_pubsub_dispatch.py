"""The Pub/Sub dispatch against the in-repo fake with the real client: the outbox is
published only after commit, survives a crash between commit and publish and a failed
publish, and dead letters reach the handler."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
from collections.abc import Iterator

import pytest
from google.api_core import exceptions as api_exceptions
from google.pubsub_v1 import types

from common.pubsub import PubSubSettings, TaskMessage, publisher_client
from server.dispatch.pubsub import PubSubDispatch
from server.domain import ids
from server.store.models import Task
from server.store.store import Store, now
from tests.pubsub_fake import PubSubFake, running_fake

PREMIUM, STANDARD = 3, 2


@pytest.fixture
def fake() -> Iterator[PubSubFake]:
    with running_fake(seed=3) as fake:
        yield fake


def settings_for(fake: PubSubFake, **changes) -> PubSubSettings:
    return PubSubSettings(
        project="kiln-it", prefix="tasks", emulator_host=fake.host, max_deliveries=2, **changes
    )


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


async def outbox_emptied(store: Store, timeout: float = 10) -> bool:
    """The drain deletes rows in the transaction that published them, committed just after
    the broker answered: wait for that commit (polled, bounded)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while await outbox_size(store):
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def test_committed_tasks_are_published_once_to_their_priority_topic(store, fake):
    settings = settings_for(fake)
    dispatch = PubSubDispatch(store, settings)
    await dispatch.start(nothing_to_handle)
    try:
        premium, standard = ready_task(PREMIUM), ready_task(STANDARD)
        async with store.transaction() as tx:
            await dispatch.tasks_ready(tx, [premium, standard])
        topic = settings.topic(PREMIUM)
        both = (topic, settings.topic(STANDARD))
        assert await asyncio.to_thread(
            fake.wait_until, lambda: all(fake.published(t) for t in both), 10
        )
        [message] = fake.published(topic)
        assert json.loads(message.data) == {"task_id": premium.id, "job_id": premium.job_id}
        assert message.attributes["priority"] == "premium"
        assert [
            json.loads(m.data)["task_id"] for m in fake.published(settings.topic(STANDARD))
        ] == [standard.id]
        assert await outbox_emptied(store)
    finally:
        await dispatch.stop()


async def test_a_rolled_back_transaction_publishes_nothing(store, fake):
    settings = settings_for(fake)
    dispatch = PubSubDispatch(store, settings)
    await dispatch.start(nothing_to_handle)
    try:
        with pytest.raises(RuntimeError):
            async with store.transaction() as tx:
                await dispatch.tasks_ready(tx, [ready_task()])
                raise RuntimeError("the use case failed after queueing")
        assert await dispatch.drain() == 0
        assert fake.published(settings.topic(STANDARD)) == []
        assert await outbox_size(store) == 0
    finally:
        await dispatch.stop()


async def test_a_crash_between_commit_and_publish_loses_nothing(store, fake):
    settings = settings_for(fake)
    # This replica commits and dies before its drain runs: only the outbox row is left.
    crashed = PubSubDispatch(store, settings)
    task = ready_task()
    async with store.transaction() as tx:
        await crashed.tasks_ready(tx, [task])
    assert await outbox_size(store) == 1
    assert fake.topics() == []

    replica = PubSubDispatch(store, settings)
    await replica.start(nothing_to_handle)
    try:
        topic = settings.topic(STANDARD)
        assert await asyncio.to_thread(fake.wait_until, lambda: fake.published(topic), 10)
        assert [json.loads(m.data)["task_id"] for m in fake.published(topic)] == [task.id]
        assert await outbox_emptied(store)
    finally:
        await replica.stop()


async def test_a_failed_publish_keeps_the_rows_for_the_next_drain(store, fake):
    # Nobody created the topics: Publish answers NOT_FOUND.
    settings = settings_for(fake, create_topology=False)
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


async def test_dead_letters_reach_the_handler_and_foreign_messages_are_dropped(store, fake):
    settings = settings_for(fake)
    handled: asyncio.Queue[tuple[str, int]] = asyncio.Queue()

    async def handle(task_id: str, deliveries: int) -> None:
        await handled.put((task_id, deliveries))

    dispatch = PubSubDispatch(store, settings)
    await dispatch.start(handle)
    try:
        publisher = publisher_client(settings)
        foreign = types.PubsubMessage(data=b"not a kiln message")
        ours = TaskMessage(ids.task_id(), ids.job_id(), STANDARD).encode()
        await publisher.publish(topic=settings.dead_letter_topic, messages=[foreign, ours])
        task_id, deliveries = await asyncio.wait_for(handled.get(), timeout=10)
        assert task_id == TaskMessage.decode(ours).task_id
        assert deliveries == settings.max_deliveries
        subscription = settings.dead_letter_subscription
        assert await asyncio.to_thread(
            fake.wait_until, lambda: len(fake.acked(subscription)) == 2, 10
        )
        assert handled.empty()
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
