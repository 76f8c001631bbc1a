"""KILN_DISPATCH=pubsub: ready tasks go through an outbox to one topic per priority.

The transaction that makes a task ready writes an outbox row; after the commit this
process drains the outbox: one Publish per priority topic, then the rows are deleted in
the same transaction that read them (a crash before that commit publishes them again:
a duplicate, which the claim by task id makes harmless). On SQLite the read and the
deletion are two transactions around the Publish, so the one connection is never held
while the broker answers. A sweep every few seconds drains rows a crashed replica left
behind.

Messages a worker could not take (nacked, or never acked) `max_deliveries` times land in
the dead-letter topic; this server pulls its subscription and fails the task's output
(or the job, for a probe) with a retryable error.

A broker that lost its topics lost their messages too (a restarted emulator keeps nothing;
an operator deleted them). When a Publish or the dead-letter Pull answers NOT_FOUND and this
server creates its topology, it creates it again and publishes every claimable task anew.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Sequence

from google.api_core import exceptions as api_exceptions
from google.pubsub_v1 import types
from google.pubsub_v1.services.publisher import PublisherAsyncClient
from google.pubsub_v1.services.subscriber import SubscriberAsyncClient

from common.log_setup import job_log_context
from common.pubsub import (
    PubSubSettings,
    TaskMessage,
    ensure_topology,
    publisher_client,
    subscriber_client,
)

from ..store.models import Task
from ..store.outage import log_round_failure
from ..store.store import Store, Tx
from ..store.task_outbox import OutboxEntry
from ..tracing import publish_spans
from . import DeadLetterHandler

log = logging.getLogger(__name__)

# Rows published per transaction.
DRAIN_BATCH = 500
# How often the outbox is swept for rows nobody kicked (a replica that died after commit).
SWEEP_SECONDS = 5.0
# Pub/Sub's attribute on a dead-lettered message: deliveries before it was given up.
DELIVERY_COUNT_ATTRIBUTE = "CloudPubSubDeadLetterSourceDeliveryCount"


class PubSubDispatch:
    name = "pubsub"

    def __init__(self, store: Store, settings: PubSubSettings) -> None:
        self.store = store
        self.settings = settings
        self._kick = asyncio.Event()
        # Long-polling ClaimTask calls of this process still work (a db-mode worker).
        self._ready = asyncio.Event()
        self._loops: list[asyncio.Task] = []
        self.publisher: PublisherAsyncClient | None = None
        self.subscriber: SubscriberAsyncClient | None = None
        self._restoring = asyncio.Lock()

    async def tasks_ready(self, tx: Tx, tasks: Sequence[Task]) -> None:
        if not tasks:
            return
        await tx.task_outbox.add_to_outbox(tasks)
        tx.after_commit(self._committed)

    def _committed(self) -> None:
        self._kick.set()
        self._ready.set()

    def arm(self) -> None:
        self._ready.clear()

    def on_notification(self, _payload: str) -> None:
        self._ready.set()

    async def wait_for_ready(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), timeout=timeout)

    async def connect(self) -> None:
        """Opens the clients (and creates the topology when configured) without starting the
        background drain and dead-letter loops; `start` does both."""
        self.publisher = publisher_client(self.settings)
        self.subscriber = subscriber_client(self.settings)
        if self.settings.create_topology:
            await ensure_topology(self.settings, self.publisher, self.subscriber)

    async def start(self, on_dead_letter: DeadLetterHandler) -> None:
        await self.connect()
        self._kick.set()  # rows left by an earlier run go out first
        self._loops = [
            asyncio.create_task(self._drain_loop(), name="outbox-drain"),
            asyncio.create_task(self._dead_letter_loop(on_dead_letter), name="dead-letters"),
        ]

    async def stop(self) -> None:
        for loop in self._loops:
            loop.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        # One last drain: what this replica committed should not wait for another's sweep.
        with contextlib.suppress(Exception):
            await self.drain()
        for client in (self.publisher, self.subscriber):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.transport.close()

    async def drain(self) -> int:
        """Publishes everything in the outbox; returns how many messages went out."""
        published = 0
        while count := await self._publish_batch():
            published += count
        return published

    async def _publish_batch(self) -> int:
        if not self.store.is_postgres:
            return await self._publish_batch_unlocked()
        async with self.store.transaction() as tx:
            entries = await tx.task_outbox.take_from_outbox(DRAIN_BATCH)
            # Published before the rows' deletion commits: a failure keeps them for a retry.
            await self._publish(entries)
        return len(entries)

    async def _publish_batch_unlocked(self) -> int:
        """SQLite: the server has one database connection, and a transaction held while the
        broker answers (up to 30 s) would stall every request. The rows are read, published
        with no transaction open, then deleted: a crash or a second process draining in
        between publishes a row twice, which the claim by task id makes harmless."""
        async with self.store.transaction() as tx:
            entries = await tx.task_outbox.peek_outbox(DRAIN_BATCH)
        if entries:
            await self._publish(entries)
            async with self.store.transaction() as tx:
                await tx.task_outbox.forget_outbox(entries)
        return len(entries)

    async def _publish(self, entries: list[OutboxEntry]) -> None:
        assert self.publisher is not None
        topics = [self.settings.topic(entry.priority) for entry in entries]
        by_topic: dict[str, list[types.PubsubMessage]] = defaultdict(list)
        with publish_spans(entries, topics) as traceparents:
            for entry, topic, traceparent in zip(entries, topics, traceparents, strict=True):
                message = TaskMessage(entry.task_id, entry.job_id, entry.priority, traceparent)
                by_topic[topic].append(message.encode())
            await asyncio.gather(
                *(
                    self.publisher.publish(topic=topic, messages=messages, timeout=30)
                    for topic, messages in by_topic.items()
                )
            )

    async def _drain_loop(self) -> None:
        backoff = 0.1
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), timeout=SWEEP_SECONDS)
            self._kick.clear()
            try:
                await self.drain()
                backoff = 0.1
            except api_exceptions.NotFound:
                await self._restore_topology()
                self._kick.set()
            except Exception:
                log_round_failure(log, "publishing ready tasks failed; retrying in %.1f s", backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
                self._kick.set()

    async def _dead_letter_loop(self, handle: DeadLetterHandler) -> None:
        assert self.subscriber is not None
        subscription = self.settings.dead_letter_subscription
        while True:
            try:
                response = await self.subscriber.pull(
                    subscription=subscription, max_messages=50, timeout=60
                )
            except api_exceptions.DeadlineExceeded:
                continue
            except api_exceptions.ServiceUnavailable:
                # Unreachable: the call fails at once, so wait before the next one.
                await asyncio.sleep(1.0)
                continue
            except api_exceptions.NotFound:
                await self._restore_topology()
                await asyncio.sleep(1.0)
                continue
            except Exception:
                log.exception("reading the dead-letter subscription failed")
                await asyncio.sleep(1.0)
                continue
            done: list[str] = []
            for received in response.received_messages:
                if await self._dead_lettered(received, handle):
                    done.append(received.ack_id)
            if done:
                await self.subscriber.acknowledge(subscription=subscription, ack_ids=done)

    async def _restore_topology(self) -> None:
        """The broker lost topics or subscriptions: make them again (when this server makes
        its topology) and publish every claimable task again, since their messages are gone."""
        if not self.settings.create_topology:
            log.warning(
                "Pub/Sub topics or subscriptions under %r are missing (KILN_PUBSUB_CREATE_TOPOLOGY "
                "is off: create them)",
                self.settings.prefix,
            )
            return
        async with self._restoring:
            assert self.publisher is not None and self.subscriber is not None
            try:
                await ensure_topology(self.settings, self.publisher, self.subscriber)
                async with self.store.transaction() as tx:
                    republished = await tx.task_outbox.republish_claimable()
            except Exception:
                log_round_failure(log, "restoring the Pub/Sub topology failed; trying again")
                return
        log.warning(
            "Pub/Sub had lost kiln's topics or subscriptions (a restarted emulator?): created "
            "again, and %d waiting task(s) published again",
            republished,
        )
        self._kick.set()

    async def _dead_lettered(
        self, received: types.ReceivedMessage, handle: DeadLetterHandler
    ) -> bool:
        try:
            message = TaskMessage.decode(received.message)
        except ValueError as error:
            log.error("dropping a dead-lettered message that is not kiln's: %s", error)
            return True
        attributes = received.message.attributes
        deliveries = int(attributes.get(DELIVERY_COUNT_ATTRIBUTE, self.settings.max_deliveries))
        try:
            with job_log_context(message.job_id, message.task_id):
                await handle(message.task_id, deliveries)
        except Exception:
            log_round_failure(log, "failing dead-lettered task %s did not work", message.task_id)
            return False
        return True
