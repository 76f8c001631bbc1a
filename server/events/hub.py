"""In-process fan-out of job events to Watch streams.

The event log in the database is the truth; the hub only tells streams that
something new is there. A poke for a job (from this process after a commit on
SQLite, or from Postgres LISTEN/NOTIFY for any process) makes the hub read the
new events of that job once and wake the streams watching it: work is
O(watchers of that job), never O(all watchers). Each job keeps a short tail in
memory; a stream that fell behind the tail reads the gap from the database
instead of buffering, so memory stays bounded however slow a client is. One
timer drives the heartbeats of every stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable

from kiln.v1 import job_service_pb2

from ..domain.errors import Unavailable
from ..store.outage import log_round_failure

log = logging.getLogger(__name__)

TAIL_LENGTH = 256
# A batch longer than this means the stream is behind: superseded progress is dropped.
COALESCE_AFTER = 32

# Reads (sequence, payload) pairs of a job after a sequence, oldest first.
EventReader = Callable[[str, int], Awaitable[list[tuple[int, bytes]]]]


class _Channel:
    """The streams of one job and the recent events they share."""

    def __init__(self, fetched_through: int) -> None:
        self.subscriptions: set[Subscription] = set()
        self.tail: deque[tuple[int, job_service_pb2.WatchResponse]] = deque(maxlen=TAIL_LENGTH)
        self.fetched_through = fetched_through
        self.dirty = False
        self.closed = False
        self.fetching: asyncio.Task | None = None
        # The last read of the log failed (the database away): read again at the next
        # heartbeat, or events committed meanwhile would wait for a poke that may not come.
        self.stale = False


class Subscription:
    """One Watch stream's place in a job's event log."""

    def __init__(self, hub: EventHub, job_id: str, channel: _Channel, cursor: int) -> None:
        self.hub = hub
        self.job_id = job_id
        self.channel = channel
        self.cursor = cursor
        self.wake = asyncio.Event()
        self.heartbeat_due = False

    async def next_batch(self) -> list[job_service_pb2.WatchResponse] | None:
        """Events after the cursor, waiting for some; None means a heartbeat is due."""
        while True:
            events = await self._available()
            if events:
                self.cursor = events[-1].sequence
                return events
            if self.hub.closing:
                raise Unavailable(
                    "the server is shutting down: watch again with "
                    f"after_sequence={self.cursor} to resume"
                )
            if self.heartbeat_due:
                self.heartbeat_due = False
                return None
            self.wake.clear()
            # Re-check after clearing so a poke between the two is not lost.
            if self.channel.fetched_through > self.cursor or self.heartbeat_due:
                continue
            await self.wake.wait()

    async def _available(self) -> list[job_service_pb2.WatchResponse]:
        channel = self.channel
        if channel.fetched_through <= self.cursor:
            return []
        tail = channel.tail
        if tail and tail[0][0] <= self.cursor + 1:
            # The log has no gaps, so what this stream lacks is the tail's last `missing`
            # entries: index from the end instead of scanning the whole tail per stream.
            missing = tail[-1][0] - self.cursor
            return [tail[index][1] for index in range(len(tail) - missing, len(tail))]
        # Behind the in-memory tail: read the gap from the log itself.
        rows = await self.hub.read_events(self.job_id, self.cursor)
        return [job_service_pb2.WatchResponse.FromString(payload) for _, payload in rows]

    def close(self) -> None:
        self.hub.unsubscribe(self)


def coalesce(
    events: list[job_service_pb2.WatchResponse], replay_through: int = 0
) -> list[job_service_pb2.WatchResponse]:
    """Drop progress a later event in the same batch supersedes, once a live stream is behind.

    Events up to `replay_through` (what was logged before the stream opened) are a replay:
    the client asked for them by sequence and gets every one. After that, a watcher that
    keeps up gets every event. One that fell behind the live events (a slow client) needs
    the latest progress, not a backlog of stale values: when more than COALESCE_AFTER live
    events wait, a `progress` event is dropped when a later one follows, and an `output`
    event when a later one for the same output has the same status. Status changes and
    `completed` always pass; the sequences of what is sent still increase, so resuming
    works as before.
    """
    replayed = [event for event in events if event.sequence <= replay_through]
    live = events[len(replayed) :]
    if len(live) <= COALESCE_AFTER:
        return events
    kept: list[job_service_pb2.WatchResponse] = []
    later_progress = False
    later_outputs: set[tuple[str, int]] = set()
    for event in reversed(live):
        kind = event.WhichOneof("event")
        if kind == "progress":
            if later_progress:
                continue
            later_progress = True
        elif kind == "output":
            key = (event.output.output.id, event.output.output.status)
            if key in later_outputs:
                continue
            later_outputs.add(key)
        kept.append(event)
    kept.reverse()
    return replayed + kept


class EventHub:
    def __init__(self, read_events: EventReader, heartbeat_seconds: float) -> None:
        self.read_events = read_events
        self.heartbeat_seconds = heartbeat_seconds
        self._channels: dict[str, _Channel] = {}
        self._heartbeat_task: asyncio.Task | None = None
        # Set by close_all(): every stream ends once it has what was logged so far.
        self.closing = False

    def start(self) -> None:
        self._heartbeat_task = asyncio.create_task(self._heartbeats(), name="watch-heartbeats")

    async def stop(self) -> None:
        if self._heartbeat_task:
            self._heartbeat_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat_task
        for channel in self._channels.values():
            if channel.fetching:
                channel.fetching.cancel()

    def close_all(self) -> None:
        """Shutdown: each stream delivers what it has, then ends with UNAVAILABLE and the
        sequence to resume after, so its client carries on at another replica."""
        self.closing = True
        for channel in self._channels.values():
            for subscription in channel.subscriptions:
                subscription.wake.set()

    @property
    def subscription_count(self) -> int:
        return sum(len(channel.subscriptions) for channel in self._channels.values())

    def subscribe(self, job_id: str, cursor: int) -> Subscription:
        channel = self._channels.get(job_id)
        new_channel = channel is None
        if channel is None:
            channel = self._channels[job_id] = _Channel(fetched_through=cursor)
        subscription = Subscription(self, job_id, channel, cursor)
        channel.subscriptions.add(subscription)
        # Catch up on anything written between the caller's read and now. A channel that
        # already existed and holds the caller's cursor needs no read: whatever is committed
        # after what it holds reaches it as an offer or a notification, as for its other
        # streams (1,000 watchers joining one job would otherwise read the log 1,000 times).
        if new_channel or channel.fetched_through < cursor:
            self.poke(job_id)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        channel = self._channels.get(subscription.job_id)
        if channel is None:
            return
        channel.subscriptions.discard(subscription)
        if not channel.subscriptions:
            # A read in flight is left to finish rather than cancelled: cancelling a task
            # inside a database call can strand the connection (on SQLite, the only one)
            # while its cleanup waits for the query, stalling every other request.
            channel.closed = True
            del self._channels[subscription.job_id]

    def offer(self, job_id: str, event: job_service_pb2.WatchResponse) -> None:
        """An event this process just committed: deliver it without reading the log.

        Only the next event in sequence is taken; anything else (another writer got in
        between) falls back to reading the gap from the log.
        """
        channel = self._channels.get(job_id)
        if channel is None or event.sequence <= channel.fetched_through:
            return
        if event.sequence != channel.fetched_through + 1:
            self.poke(job_id)
            return
        channel.tail.append((event.sequence, event))
        channel.fetched_through = event.sequence
        for subscription in channel.subscriptions:
            subscription.wake.set()

    def poke_all(self) -> None:
        """After notifications may have been lost (a dropped LISTEN connection)."""
        for job_id in list(self._channels):
            self.poke(job_id)

    def poke(self, job_id: str, through: int = 0) -> None:
        """New events may exist for `job_id` (up to `through`, when known); cheap when
        nobody watches it, and no read at all when the hub already holds `through`."""
        channel = self._channels.get(job_id)
        if channel is None:
            return
        if through and through <= channel.fetched_through:
            return
        channel.dirty = True
        if channel.fetching is None or channel.fetching.done():
            channel.fetching = asyncio.create_task(self._fetch(job_id, channel))

    async def _fetch(self, job_id: str, channel: _Channel) -> None:
        while channel.dirty and not channel.closed:
            channel.dirty = False
            try:
                rows = await self.read_events(job_id, channel.fetched_through)
            except Exception:
                log_round_failure(log, "reading events of %s failed", job_id)
                channel.stale = True
                return
            channel.stale = False
            # Offers may have moved the channel on while the read was in flight.
            fresh = [(seq, payload) for seq, payload in rows if seq > channel.fetched_through]
            for sequence, payload in fresh:
                channel.tail.append((sequence, job_service_pb2.WatchResponse.FromString(payload)))
            if fresh:
                channel.fetched_through = fresh[-1][0]
                channel.dirty = True  # there may be more than one page
                for subscription in channel.subscriptions:
                    subscription.wake.set()

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_seconds)
            for job_id, channel in list(self._channels.items()):
                if channel.stale:
                    self.poke(job_id)
                for subscription in channel.subscriptions:
                    subscription.heartbeat_due = True
                    subscription.wake.set()
