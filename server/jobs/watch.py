"""Watch: a job's events as a stream, from a snapshot or from a sequence to resume after.

The stream reads the job once and subscribes to the hub at that sequence; the hub hands
every watcher of a job the same logged event objects. A completed event is the one that
carries download links, signed at delivery (SignedCompletions) so a logged event never
holds an expired one.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import AsyncIterator

from kiln.v1 import job_service_pb2

from ..domain.errors import FieldViolation, InvalidArgument
from ..domain.states import TERMINAL, JobStatus
from ..events.hub import EventHub, coalesce
from ..store.store import JobSnapshot, Store
from .reads import JobMessages

# A completed event signed for one watcher is reused for others this long (links last an
# hour or more); and so many signed events are kept.
SIGNED_REUSE = 60.0
SIGNED_EVENTS_KEPT = 256


class SignedCompletions:
    """Completed events with their links signed: one signing per logged event for all its
    watchers within SIGNED_REUSE (and so one encoding, on gRPC, where responses are shared)."""

    def __init__(self, messages: JobMessages) -> None:
        self.messages = messages
        # id(logged completed event) -> (event, when signed, signed copy). The event is kept
        # beside its id: an id is reused once its object is gone.
        self._signed: OrderedDict[
            int, tuple[job_service_pb2.WatchResponse, float, job_service_pb2.WatchResponse]
        ] = OrderedDict()

    async def sign(self, event: job_service_pb2.WatchResponse) -> job_service_pb2.WatchResponse:
        key = id(event)
        moment = time.monotonic()
        cached = self._signed.get(key)
        if cached is not None and cached[0] is event and moment - cached[1] < SIGNED_REUSE:
            return cached[2]
        signed = job_service_pb2.WatchResponse()
        signed.CopyFrom(event)
        await self.messages.add_links(signed.completed.job)
        self._signed[key] = (event, moment, signed)
        while len(self._signed) > SIGNED_EVENTS_KEPT:
            self._signed.popitem(last=False)
        return signed


class JobWatch:
    def __init__(self, store: Store, hub: EventHub, messages: JobMessages) -> None:
        self.store = store
        self.hub = hub
        self.messages = messages
        self.completions = SignedCompletions(messages)

    async def watch(
        self, organization_id: str, request: job_service_pb2.WatchRequest
    ) -> AsyncIterator[job_service_pb2.WatchResponse]:
        """Checked and read here, before the stream begins: a refused Watch fails the call
        instead of ending a stream that had started."""
        if request.after_sequence < 0:
            raise InvalidArgument([FieldViolation("after_sequence", "must not be negative")])
        record = await self.store.read_job(organization_id, request.id)
        resume = request.HasField("after_sequence")
        cursor = request.after_sequence if resume else 0
        if cursor > record.job.last_sequence:
            raise InvalidArgument(
                [
                    FieldViolation(
                        "after_sequence",
                        f"job has no event {cursor} yet (last is {record.job.last_sequence})",
                    )
                ]
            )
        return self._stream(record, cursor, fresh=not resume)

    async def _stream(
        self, record: JobSnapshot, cursor: int, *, fresh: bool
    ) -> AsyncIterator[job_service_pb2.WatchResponse]:
        """The stream of a job `watch` read once. What was logged up to the sequence read is
        the snapshot (fresh) or the replay asked for (never coalesced); what is logged after
        it reaches the subscription, including what committed between the read and the
        subscribing: subscribing makes the hub read the job's log once more after the
        subscription joined, and every later commit pokes it."""
        # A fresh stream starts from a snapshot: it needs nothing logged before the sequence
        # read, so the hub is not made to page through the job's whole log.
        replay_through = record.job.last_sequence
        subscription = self.hub.subscribe(record.job.id, replay_through if fresh else cursor)
        try:
            if fresh:
                snapshot = job_service_pb2.WatchResponse(
                    sequence=record.job.last_sequence,
                    snapshot=job_service_pb2.SnapshotEvent(job=await self.messages.message(record)),
                )
                snapshot.time.GetCurrentTime()
                yield snapshot
                if JobStatus(record.job.status) in TERMINAL:
                    completed = job_service_pb2.WatchResponse(
                        sequence=record.job.last_sequence,
                        completed=job_service_pb2.CompletedEvent(
                            job=await self.messages.message(record)
                        ),
                    )
                    completed.time.GetCurrentTime()
                    yield completed
                    return
            elif JobStatus(record.job.status) in TERMINAL and cursor >= record.job.last_sequence:
                return
            while True:
                batch = await subscription.next_batch()
                if batch is None:
                    if subscription.cursor < replay_through:
                        # The replay asked for is still being read: its events come next, and
                        # a heartbeat (sequence = cursor) must not cut into them.
                        continue
                    heartbeat = job_service_pb2.WatchResponse(
                        sequence=subscription.cursor, heartbeat=job_service_pb2.HeartbeatEvent()
                    )
                    heartbeat.time.GetCurrentTime()
                    yield heartbeat
                    continue
                for event in coalesce(batch, replay_through):
                    if event.HasField("completed"):
                        yield await self.completions.sign(event)
                        return
                    yield event
        finally:
            subscription.close()
