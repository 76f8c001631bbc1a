"""How a worker takes messages from Pub/Sub (worker/pubsub_queue.py PubSubQueue), against Google's
emulator with the real client: a Pull the worker stops waiting on must never hide a message.

Every subscription here has Pub/Sub's longest ack deadline (600 s): a message hidden in a
Pull nobody reads would not come back within any of these tests' timeouts, so each test
fails rather than passes slowly when a message is hidden. The delivery attempt Pub/Sub
counts says the same without a clock: 1 is a first delivery, 2 a hand-back."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable

import pytest

from common.pubsub import (
    MAX_ACK_DEADLINE,
    PubSubSettings,
    TaskMessage,
    ensure_topology,
    publisher_client,
    subscriber_client,
)
from tests.support.pubsub_emulator import PubSubEmulator
from worker.pubsub_queue import PubSubDelivery, PubSubQueue

PREMIUM, STANDARD, ECONOMY = 3, 2, 1
# Far below the 600 s a hidden message would take to come back.
TIMEOUT = 30.0


@pytest.fixture
async def settings(pubsub_emulator: PubSubEmulator) -> PubSubSettings:
    settings = PubSubSettings(
        project=f"kiln-rx-{uuid.uuid4().hex[:8]}",
        prefix="tasks",
        emulator_host=pubsub_emulator.host,
        ack_deadline_seconds=MAX_ACK_DEADLINE,
    )
    publisher, subscriber = publisher_client(settings), subscriber_client(settings)
    await ensure_topology(settings, publisher, subscriber)
    await publisher.transport.close()
    await subscriber.transport.close()
    return settings


@contextlib.asynccontextmanager
async def worker_queue(settings: PubSubSettings) -> AsyncIterator[PubSubQueue]:
    # The queue's claim side (the server's WorkerService) is not used by these tests.
    queue = PubSubQueue(settings, subscriber_client(settings), stub=None, metadata=())  # type: ignore[arg-type]
    # Waiting Pulls as long as the test may take: what they do while open is under test,
    # not how soon they end (on a loaded machine a 2 s Pull could end before a publish).
    queue.wait_seconds = 2 * TIMEOUT
    try:
        yield queue
    finally:
        await queue.close()


async def publish(settings: PubSubSettings, priority: int, name: str) -> None:
    publisher = publisher_client(settings)
    try:
        message = TaskMessage(f"tsk_{name}", f"job_{name}", priority)
        await publisher.publish(topic=settings.topic(priority), messages=[message.encode()])
    finally:
        await publisher.transport.close()


async def receive(queue: PubSubQueue) -> PubSubDelivery:
    delivery = await asyncio.wait_for(queue._receive(), TIMEOUT)
    assert delivery is not None
    return delivery


async def until(condition: Callable[[], bool]) -> None:
    """Waits (polling) until `condition` holds; fails the test after TIMEOUT."""
    deadline = asyncio.get_running_loop().time() + TIMEOUT
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


async def until_held(queue: PubSubQueue) -> None:
    await until(queue._holds_any)


async def waiting_slot(queue: PubSubQueue) -> asyncio.Task[PubSubDelivery | None]:
    """A slot that found every subscription empty and waits on all three."""
    waiting = asyncio.create_task(queue._receive())
    await until(lambda: len(queue._polls) == 3)
    return waiting


async def test_a_message_arriving_after_the_slot_found_its_task_elsewhere_is_not_hidden(
    settings,
):
    # Three rounds: with the three waits cancelled (kiln before this test), the second
    # message was hidden in 3 of 5 rounds of this same sequence on the emulator.
    publisher = publisher_client(settings)
    async with worker_queue(settings) as queue:
        for round_ in range(3):
            waiting = await waiting_slot(queue)
            first = TaskMessage(f"tsk_first{round_}", "job_x", PREMIUM)
            await publisher.publish(topic=settings.topic(PREMIUM), messages=[first.encode()])
            found = await asyncio.wait_for(waiting, TIMEOUT)
            assert found is not None and found.message.task_id == first.task_id
            # The Pull that brought it is not opened again: no slot waits any more.
            await until(lambda: PREMIUM not in queue._polls)
            # At once, while the STANDARD and ECONOMY waits this slot no longer needs are
            # open: what they get is held for the worker's next free slot.
            second = TaskMessage(f"tsk_second{round_}", "job_x", STANDARD)
            await publisher.publish(topic=settings.topic(STANDARD), messages=[second.encode()])
            taken = await receive(queue)
            assert taken.message.task_id == second.task_id
            assert taken.delivery_attempt == 1
            await found.ack()
            await taken.ack()
    await publisher.transport.close()


async def test_held_messages_go_to_the_next_slot_most_urgent_first(settings):
    async with worker_queue(settings) as queue:
        waiting = await waiting_slot(queue)
        await publish(settings, STANDARD, "started")
        started = await asyncio.wait_for(waiting, TIMEOUT)
        assert started is not None
        await started.ack()
        await publish(settings, ECONOMY, "economy")
        await until_held(queue)
        await publish(settings, PREMIUM, "premium")
        await until(lambda: sum(len(held) for held in queue._held.values()) == 2)
        taken = [await receive(queue), await receive(queue)]
        assert [d.message.task_id for d in taken] == ["tsk_premium", "tsk_economy"]
        for delivery in taken:
            await delivery.ack()


async def test_a_held_message_no_slot_takes_goes_back_to_another_worker(settings):
    async with worker_queue(settings) as busy, worker_queue(settings) as idle:
        busy.hold_seconds = 0.5
        waiting = await waiting_slot(busy)
        await publish(settings, PREMIUM, "busy")
        running = await asyncio.wait_for(waiting, TIMEOUT)
        assert running is not None
        await running.ack()
        await publish(settings, STANDARD, "waiting")
        await until_held(busy)
        # No slot of the busy worker asks: the message goes back and the idle worker gets it.
        handed_back = await receive(idle)
        assert handed_back.message.task_id == "tsk_waiting"
        assert handed_back.delivery_attempt == 2
        assert not busy._holds_any()
        await handed_back.ack()


async def test_a_stopping_worker_hands_back_what_it_holds(settings):
    async with worker_queue(settings) as other:
        async with worker_queue(settings) as stopping:
            waiting = await waiting_slot(stopping)
            await publish(settings, PREMIUM, "running")
            running = await asyncio.wait_for(waiting, TIMEOUT)
            assert running is not None
            await running.ack()
            await publish(settings, ECONOMY, "held")
            await until_held(stopping)
        taken = await receive(other)
        assert taken.message.task_id == "tsk_held"
        await taken.ack()
