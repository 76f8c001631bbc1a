"""KILN_DISPATCH=pubsub: a worker's tasks come from Pub/Sub messages.

Pub/Sub is read with synchronous Pull, not the streaming subscriber: a streaming pull
buffers messages ahead of the callbacks (even `max_messages=1` lets one worker hoard
while another idles), and its lease management stops extending after
`max_lease_duration` (an hour by default), which a long encode outlives. Here a free slot
takes at most one message, and extends that message's ack deadline itself for as long as
its task runs (worker.sources.keep_extended).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

import grpc
from google.api_core import exceptions as api_exceptions
from google.pubsub_v1.services.subscriber import SubscriberAsyncClient
from kiln.worker.v1 import worker_service_pb2 as wpb
from kiln.worker.v1 import worker_service_pb2_grpc

from common.pubsub import DRAIN_ORDER, MAX_ACK_DEADLINE, PubSubSettings, TaskMessage
from common.telemetry import valid_traceparent

from .sources import Claimed, keep_extended

log = logging.getLogger(__name__)

# Longest wait of one waiting Pull. The broker answers an idle one empty just before this
# deadline, so it ends without being cancelled; short, because a Pull left open after its
# slot found work elsewhere can still catch a message (which is then held, see PubSubQueue).
PUBSUB_WAIT_SECONDS = 2.0
# Longest time a worker holds a message no slot of it asked for (see PubSubQueue).
MAX_HOLD_SECONDS = 10.0
# How long a worker holds a message while the server does not answer its claim.
UNREACHABLE_SERVER_PATIENCE_SECONDS = 60.0
# Pause after a claim the server refused (wrong token, bad request) before pulling again.
REFUSED_CLAIM_PAUSE_SECONDS = 1.0


@dataclass
class PubSubDelivery:
    client: SubscriberAsyncClient
    subscription: str
    ack_id: str
    message: TaskMessage
    deadline_seconds: int
    priority: int
    # Pub/Sub's count of this message's deliveries, this one included (1 = first).
    delivery_attempt: int = 1

    @property
    def extend_every(self) -> float:
        # Three extensions per deadline: two may fail before the message is redelivered.
        return max(self.deadline_seconds / 3, 0.2)

    async def extend(self) -> None:
        await self.client.modify_ack_deadline(
            subscription=self.subscription,
            ack_ids=[self.ack_id],
            ack_deadline_seconds=self.deadline_seconds,
            timeout=10,
        )

    async def ack(self) -> None:
        with contextlib.suppress(api_exceptions.GoogleAPICallError):
            await self.client.acknowledge(
                subscription=self.subscription, ack_ids=[self.ack_id], timeout=10
            )

    async def nack(self) -> None:
        # A zero deadline hands the message back at once (it counts as a delivery).
        with contextlib.suppress(api_exceptions.GoogleAPICallError):
            await self.client.modify_ack_deadline(
                subscription=self.subscription,
                ack_ids=[self.ack_id],
                ack_deadline_seconds=0,
                timeout=10,
            )


class PubSubQueue:
    """KILN_DISPATCH=pubsub: pull one message, claim its task id, keep it leased meanwhile.

    Pub/Sub has no priorities: a slot looks into the PREMIUM, STANDARD and ECONOMY
    subscriptions in that order without waiting, and only when all are empty waits.

    Waiting is done by the worker, not by each slot: while any slot waits, one long-poll
    Pull runs per subscription, and a message one of them brings is held for the slots
    (PREMIUM first). Those Pulls are never cancelled when a slot finds its task through
    another one: a Pull cancelled by its client can still be handed the next message (the
    emulator does it; Google's service documents it), which then stays hidden for the whole
    ack deadline. A Pull left running ends by itself within PUBSUB_WAIT_SECONDS (the broker
    answers an idle one just before its deadline) and is not opened again for nobody; what
    it brings after every slot got busy is held for a slot of this worker for a short
    while, then handed back.
    """

    def __init__(
        self,
        settings: PubSubSettings,
        client: SubscriberAsyncClient,
        stub: worker_service_pb2_grpc.WorkerServiceStub,
        metadata: tuple,
    ) -> None:
        self.settings = settings
        self.client = client
        self.stub = stub
        self.metadata = metadata
        self.deadline = min(settings.ack_deadline_seconds, MAX_ACK_DEADLINE)
        # A held message goes back after half its ack deadline: a slot that takes it late
        # still has time to start extending it.
        self.hold_seconds = min(self.deadline / 2, MAX_HOLD_SECONDS)
        self.wait_seconds = PUBSUB_WAIT_SECONDS
        self._waiting = 0
        self._arrived = asyncio.Condition()
        self._polls: dict[int, asyncio.Task[None]] = {}
        self._held: dict[int, list[tuple[PubSubDelivery, asyncio.TimerHandle]]] = {
            priority: [] for priority in DRAIN_ORDER
        }
        self._handing_back: set[asyncio.Task[None]] = set()

    async def next(self, worker_id: str) -> Claimed | None:
        delivery = await self._receive()
        if delivery is None:
            return None
        keeper = asyncio.create_task(keep_extended(delivery))
        try:
            response = await self._claim(worker_id, delivery)
        except asyncio.CancelledError:
            # Draining before the task started: hand the message back for another worker.
            await asyncio.shield(delivery.nack())
            raise
        except grpc.aio.AioRpcError as error:
            # Not ours to drop: the message comes back (and, if this keeps happening, goes
            # to the dead-letter topic, where the server fails the task visibly). The pause
            # keeps a misconfigured worker from burning through deliveries in a tight loop.
            log.warning(
                "claiming task %s failed (%s: %s); message handed back",
                delivery.message.task_id,
                error.code().name,
                error.details(),
            )
            await delivery.nack()
            await asyncio.sleep(REFUSED_CLAIM_PAUSE_SECONDS)
            return None
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
        if not response.HasField("task"):
            # Leased elsewhere, done or canceled: a duplicate or stale delivery.
            log.info("task %s is not waiting to run: message dropped", delivery.message.task_id)
            await delivery.ack()
            return None
        return Claimed(response.task, delivery)

    async def _claim(self, worker_id: str, delivery: PubSubDelivery) -> wpb.ClaimTaskResponse:
        """Claims the message's task. While the server is unreachable (a restart) the
        worker holds the message and tries again, rather than handing it back at once:
        each hand-back is a delivery, and a few seconds of restart would otherwise send
        every waiting message to the dead-letter topic."""
        request = wpb.ClaimTaskRequest(worker_id=worker_id, task_id=delivery.message.task_id)
        # The message's trace context: the server's claim call joins the task's trace.
        traceparent = valid_traceparent(delivery.message.traceparent)
        metadata = (*self.metadata, ("traceparent", traceparent)) if traceparent else self.metadata
        pause = 0.25
        waited = 0.0
        while True:
            try:
                return await self.stub.ClaimTask(request, metadata=metadata, timeout=30)
            except grpc.aio.AioRpcError as error:
                unreachable = error.code() in (
                    grpc.StatusCode.UNAVAILABLE,
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                )
                if not unreachable or waited >= UNREACHABLE_SERVER_PATIENCE_SECONDS:
                    raise
                log.warning(
                    "server unreachable (%s); holding task %s's message and retrying",
                    error.code().name,
                    delivery.message.task_id,
                )
            await asyncio.sleep(pause)
            waited += pause
            pause = min(pause * 2, 4.0)

    async def _receive(self) -> PubSubDelivery | None:
        """A slot's next message: the most urgent one this worker holds or a subscription has
        ready now (PREMIUM first), else the first the waiting Pulls bring. After a wake-up what is
        held is taken without another sweep (a Pull was waiting on every subscription, so
        what was ready has come): a sweep would cost a round trip per task dispatched."""
        # The sweep takes held messages and subscriptions' ready ones in one priority order:
        # a held ECONOMY message must not go before a STANDARD one waiting in its subscription.
        delivery = await self._sweep()
        while delivery is None:
            self._waiting += 1
            try:
                async with self._arrived:
                    self._start_polls()
                    # Checked under the lock: a message held during the sweep counts.
                    await self._arrived.wait_for(self._holds_any)
            finally:
                self._waiting -= 1
            # None when another slot of this worker took it first: wait again.
            delivery = self._take_most_urgent_held()
        return delivery

    async def _sweep(self) -> PubSubDelivery | None:
        for priority in DRAIN_ORDER:
            held = self._take_held(priority)
            if held is not None:
                return held
            found = await self._pull(priority, wait=False)
            if found:
                for extra in found[1:]:
                    await extra.nack()
                return found[0]
        return None

    def _take_most_urgent_held(self) -> PubSubDelivery | None:
        for priority in DRAIN_ORDER:
            held = self._take_held(priority)
            if held is not None:
                return held
        return None

    def _start_polls(self) -> None:
        for priority in DRAIN_ORDER:
            if priority not in self._polls:
                self._polls[priority] = asyncio.create_task(
                    self._poll(priority), name=f"pubsub-poll-{priority}"
                )

    async def _poll(self, priority: int) -> None:
        """Long-polls one subscription while any slot waits; holds what arrives."""
        try:
            # Only while a waiting slot has no message yet: a Pull opened for nobody would be
            # handed the next message (one a worker elsewhere could run now) to hold.
            while self._waiting > self._held_count():
                found = await self._pull(priority, wait=True)
                for delivery in found:
                    self._hold(delivery)
                if found:
                    async with self._arrived:
                        self._arrived.notify_all()
        finally:
            self._polls.pop(priority, None)

    def _hold(self, delivery: PubSubDelivery) -> None:
        expiry = asyncio.get_running_loop().call_later(
            self.hold_seconds, self._hand_back_held, delivery
        )
        self._held[delivery.priority].append((delivery, expiry))

    def _holds_any(self) -> bool:
        return any(self._held.values())

    def _held_count(self) -> int:
        return sum(len(held) for held in self._held.values())

    def _take_held(self, priority: int) -> PubSubDelivery | None:
        if not self._held[priority]:
            return None
        delivery, expiry = self._held[priority].pop(0)
        expiry.cancel()
        return delivery

    def _hand_back_held(self, delivery: PubSubDelivery) -> None:
        """No slot of this worker took it in time: another worker may."""
        held = self._held[delivery.priority]
        for index, (candidate, _) in enumerate(held):
            if candidate is delivery:
                del held[index]
                break
        handing_back = asyncio.create_task(delivery.nack())
        self._handing_back.add(handing_back)
        handing_back.add_done_callback(self._handing_back.discard)

    async def _pull(self, priority: int, *, wait: bool) -> list[PubSubDelivery]:
        subscription = self.settings.subscription(priority)
        try:
            response = await self.client.pull(
                subscription=subscription,
                max_messages=1,
                return_immediately=not wait,
                timeout=self.wait_seconds if wait else 10,
            )
        except api_exceptions.DeadlineExceeded:
            return []
        except api_exceptions.ServiceUnavailable:
            # Unreachable: the call fails at once, so wait before the next one.
            await asyncio.sleep(1)
            return []
        except api_exceptions.GoogleAPICallError as error:
            log.warning("pulling %s failed: %s", subscription, error)
            await asyncio.sleep(1)  # Pub/Sub unreachable: back off, then retry
            return []
        deliveries = []
        for received in response.received_messages:
            try:
                message = TaskMessage.decode(received.message)
            except ValueError as error:
                # Hand it back: after max deliveries it rests in the dead-letter topic.
                log.error("message on %s is not a kiln task: %s", subscription, error)
                await self.client.modify_ack_deadline(
                    subscription=subscription, ack_ids=[received.ack_id], ack_deadline_seconds=0
                )
                continue
            deliveries.append(
                PubSubDelivery(
                    self.client,
                    subscription,
                    received.ack_id,
                    message,
                    self.deadline,
                    priority,
                    received.delivery_attempt,
                )
            )
        return deliveries

    async def close(self) -> None:
        # Stopping: the waiting Pulls must end now (one may hide a message for its ack
        # deadline: the price of stopping while idle); held messages go back at once.
        for poll in list(self._polls.values()):
            poll.cancel()
        await asyncio.gather(*self._polls.values(), return_exceptions=True)
        for priority in DRAIN_ORDER:
            while (held := self._take_held(priority)) is not None:
                await held.nack()
        await asyncio.gather(*self._handing_back, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.client.transport.close()
