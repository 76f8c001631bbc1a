"""Where a worker's next task comes from: the server's queue (here), or Pub/Sub
(worker/pubsub_queue.py).

Each free slot of a worker asks its source for one task at a time, so a worker never
holds more work than it has free slots. Whatever the source, the task is leased from the
server over the WorkerService (the server owns every lease and fencing token).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Protocol

import grpc
from kiln.worker.v1 import worker_service_pb2 as wpb
from kiln.worker.v1 import worker_service_pb2_grpc

log = logging.getLogger(__name__)

# Longest wait of one long-poll (a server restart or a new message ends it sooner).
LONG_POLL_SECONDS = 10.0


class Delivery(Protocol):
    """The message a task came with, if any: kept leased while the task runs."""

    async def extend(self) -> None: ...
    async def ack(self) -> None: ...
    async def nack(self) -> None: ...

    @property
    def extend_every(self) -> float: ...


@dataclass
class Claimed:
    task: wpb.Task
    delivery: Delivery | None = None


class TaskSource(Protocol):
    async def next(self, worker_id: str) -> Claimed | None:
        """The next task leased to `worker_id`, or None when none came in time."""

    async def close(self) -> None: ...


class ServerQueue:
    """KILN_DISPATCH=db: long-poll ClaimTask; the server wakes the call when a task is ready."""

    def __init__(self, stub: worker_service_pb2_grpc.WorkerServiceStub, metadata: tuple) -> None:
        self.stub = stub
        self.metadata = metadata

    async def next(self, worker_id: str) -> Claimed | None:
        try:
            response = await self.stub.ClaimTask(
                wpb.ClaimTaskRequest(worker_id=worker_id, wait_seconds=LONG_POLL_SECONDS),
                metadata=self.metadata,
                timeout=LONG_POLL_SECONDS + 20,
            )
        except grpc.aio.AioRpcError as error:
            log.warning("claiming a task failed: %s", error.code().name)
            await asyncio.sleep(1)  # server down or restarting: back off, then retry
            return None
        return Claimed(response.task) if response.HasField("task") else None

    async def close(self) -> None:
        return None


async def keep_extended(delivery: Delivery) -> None:
    """Extends the message's ack deadline for as long as this runs (while its claim is
    retried, and while its task runs, however long): a message must not be redelivered to
    another worker meanwhile. A failed extension is logged; the next one may succeed."""
    while True:
        await asyncio.sleep(delivery.extend_every)
        try:
            await delivery.extend()
        except Exception as error:
            log.warning("extending a message's ack deadline failed: %s", error)
