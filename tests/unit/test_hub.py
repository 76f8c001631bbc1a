"""EventHub fan-out, with an in-memory event log standing in for the store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from kiln.v1 import job_pb2, job_service_pb2

from server.events.hub import COALESCE_AFTER, TAIL_LENGTH, EventHub, Subscription, coalesce

JOB = "job_a"
TIMEOUT = 5.0


class EventLog:
    """The job_events table: (sequence, payload) per job, read a page at a time."""

    def __init__(self, page: int = 100) -> None:
        self.page = page
        self.events: dict[str, list[tuple[int, bytes]]] = {}
        self.reads: list[tuple[str, int]] = []

    def append(self, job_id: str, count: int) -> None:
        log = self.events.setdefault(job_id, [])
        for _ in range(count):
            sequence = len(log) + 1
            event = job_service_pb2.WatchResponse(
                sequence=sequence,
                progress=job_service_pb2.ProgressEvent(progress=sequence / 1000),
            )
            log.append((sequence, event.SerializeToString()))

    async def read(self, job_id: str, after: int) -> list[tuple[int, bytes]]:
        self.reads.append((job_id, after))
        await asyncio.sleep(0)  # a database read suspends; let other tasks interleave here
        rows = [row for row in self.events.get(job_id, []) if row[0] > after]
        return rows[: self.page]


@pytest.fixture
def log() -> EventLog:
    return EventLog()


@pytest.fixture
async def hub(log: EventLog) -> AsyncIterator[EventHub]:
    hub = EventHub(log.read, heartbeat_seconds=3600)
    hub.start()
    yield hub
    await hub.stop()


async def drain(subscription: Subscription, count: int) -> list[job_service_pb2.WatchResponse]:
    """Events until at least `count` arrived (heartbeats skipped)."""
    received: list[job_service_pb2.WatchResponse] = []
    while len(received) < count:
        batch = await subscription.next_batch()
        if batch is not None:
            received.extend(batch)
    return received


async def collect(subscription: Subscription, count: int) -> list[job_service_pb2.WatchResponse]:
    return await asyncio.wait_for(drain(subscription, count), TIMEOUT)


def sequences(events: list[job_service_pb2.WatchResponse]) -> list[int]:
    return [event.sequence for event in events]


async def test_events_delivered_in_order(hub, log):
    subscription = hub.subscribe(JOB, 0)
    log.append(JOB, 3)
    hub.poke(JOB)
    events = await collect(subscription, 3)
    assert sequences(events) == [1, 2, 3]
    assert [round(event.progress.progress * 1000) for event in events] == [1, 2, 3]
    assert subscription.cursor == 3

    log.append(JOB, 2)
    hub.poke(JOB)
    assert sequences(await collect(subscription, 2)) == [4, 5]


async def test_subscribe_catches_up_without_a_poke(hub, log):
    log.append(JOB, 4)
    subscription = hub.subscribe(JOB, 1)
    assert sequences(await collect(subscription, 3)) == [2, 3, 4]


async def test_several_subscribers_each_get_every_event(hub, log):
    subscriptions = [hub.subscribe(JOB, 0) for _ in range(3)]
    other = hub.subscribe("job_b", 0)
    assert hub.subscription_count == 4
    log.append(JOB, 10)
    hub.poke(JOB)
    results = await asyncio.gather(*(collect(s, 10) for s in subscriptions))
    for events in results:
        assert sequences(events) == list(range(1, 11))

    # Streams already waiting when the next events land are all woken.
    # (Tasks run in creation order: each blocks in next_batch before the fetch runs.)
    waiting = [asyncio.create_task(drain(s, 5)) for s in subscriptions]
    log.append(JOB, 5)
    hub.poke(JOB)
    for events in await asyncio.wait_for(asyncio.gather(*waiting), TIMEOUT):
        assert sequences(events) == list(range(11, 16))

    log.append("job_b", 1)
    hub.poke("job_b")
    assert sequences(await collect(other, 1)) == [1]
    # job_b's event reached only job_b's subscriber.
    assert all(s.cursor == 15 for s in subscriptions)


async def test_subscribers_at_different_cursors(hub, log):
    log.append(JOB, 5)
    early = hub.subscribe(JOB, 0)
    late = hub.subscribe(JOB, 3)
    early_events, late_events = await asyncio.gather(collect(early, 5), collect(late, 2))
    assert sequences(early_events) == [1, 2, 3, 4, 5]
    assert sequences(late_events) == [4, 5]


async def test_subscriber_behind_the_tail_reads_the_gap_from_the_log(hub, log):
    total = TAIL_LENGTH + 144  # 400: more than the tail, several reader pages
    keeper = hub.subscribe(JOB, 0)  # keeps the channel (and its tail) alive
    log.append(JOB, total)
    hub.poke(JOB)
    assert sequences(await collect(keeper, total)) == list(range(1, total + 1))

    # The tail now holds only the last TAIL_LENGTH events; a new stream from 0
    # is behind it and must read the gap through the reader.
    reads_before = len(log.reads)
    behind = hub.subscribe(JOB, 0)
    events = await collect(behind, total)
    assert sequences(events) == list(range(1, total + 1))
    gap_reads = log.reads[reads_before:]
    assert (JOB, 0) in gap_reads

    # Both keep receiving new events after the catch-up, with no repeat.
    log.append(JOB, 5)
    hub.poke(JOB)
    tail_from_keeper, tail_from_behind = await asyncio.gather(
        collect(keeper, 5), collect(behind, 5)
    )
    assert sequences(tail_from_keeper) == list(range(total + 1, total + 6))
    assert sequences(tail_from_behind) == list(range(total + 1, total + 6))


async def test_slow_subscriber_while_events_keep_coming(hub, log):
    keeper = hub.subscribe(JOB, 0)  # reads every burst, so the tail moves on
    slow = hub.subscribe(JOB, 0)
    slow_received: list[job_service_pb2.WatchResponse] = []
    for burst in range(6):
        log.append(JOB, 100)
        hub.poke(JOB)
        assert sequences(await collect(keeper, 100)) == list(
            range(burst * 100 + 1, burst * 100 + 101)
        )
        if burst == 3:  # the slow stream reads a little, far behind the tail
            slow_received += await collect(slow, 1)
    slow_received += await collect(slow, 600 - len(slow_received))
    assert sequences(slow_received) == list(range(1, 601))
    assert slow.cursor == keeper.cursor == 600


async def test_unsubscribe_removes_the_channel(hub, log):
    first = hub.subscribe(JOB, 0)
    second = hub.subscribe(JOB, 0)
    assert hub.subscription_count == 2
    first.close()
    assert hub.subscription_count == 1
    assert JOB in hub._channels

    # The remaining stream still works.
    log.append(JOB, 1)
    hub.poke(JOB)
    assert sequences(await collect(second, 1)) == [1]

    second.close()
    assert hub.subscription_count == 0
    assert JOB not in hub._channels
    # Nobody watches: a poke reads nothing.
    reads_before = len(log.reads)
    hub.poke(JOB)
    assert len(log.reads) == reads_before
    second.close()  # closing twice is harmless
    assert hub.subscription_count == 0


async def test_heartbeat_returns_none(log):
    hub = EventHub(log.read, heartbeat_seconds=0.05)
    hub.start()
    try:
        subscription = hub.subscribe(JOB, 0)
        assert await asyncio.wait_for(subscription.next_batch(), TIMEOUT) is None
        assert subscription.cursor == 0
        # Events still flow after a heartbeat, and arrive with their sequences.
        log.append(JOB, 2)
        hub.poke(JOB)
        assert sequences(await collect(subscription, 2)) == [1, 2]
    finally:
        await hub.stop()


async def test_waiting_stream_is_woken_by_a_poke(log):
    # Heartbeat timer not started: next_batch waits until an event is poked in.
    hub = EventHub(log.read, heartbeat_seconds=0.01)
    subscription = hub.subscribe(JOB, 0)
    waiting = asyncio.create_task(subscription.next_batch())
    log.append(JOB, 1)
    hub.poke(JOB)
    batch = await asyncio.wait_for(waiting, TIMEOUT)
    assert batch is not None
    assert sequences(batch) == [1]
    await hub.stop()


def progress_event(sequence: int, value: float) -> job_service_pb2.WatchResponse:
    return job_service_pb2.WatchResponse(
        sequence=sequence, progress=job_service_pb2.ProgressEvent(progress=value)
    )


def output_event(
    sequence: int, output_id: str, status: job_pb2.OutputStatus, value: float
) -> job_service_pb2.WatchResponse:
    return job_service_pb2.WatchResponse(
        sequence=sequence,
        output=job_service_pb2.OutputEvent(
            output=job_pb2.Output(id=output_id, status=status, progress=value)
        ),
    )


def test_coalesce_leaves_a_short_batch_alone():
    batch = [progress_event(n, n) for n in range(1, COALESCE_AFTER + 1)]
    assert coalesce(batch) == batch


def test_coalesce_keeps_latest_progress_and_every_status_change():
    processing, completed = job_pb2.OUTPUT_STATUS_PROCESSING, job_pb2.OUTPUT_STATUS_COMPLETED
    batch = [progress_event(n, n / 2) for n in range(1, 40)]
    batch += [output_event(40 + n, "out_a", processing, n) for n in range(10)]
    batch.append(
        job_service_pb2.WatchResponse(
            sequence=50,
            status_change=job_service_pb2.StatusChangeEvent(to_status=job_pb2.JOB_STATUS_COMPLETED),
        )
    )
    batch.append(output_event(51, "out_a", completed, 100))
    batch.append(progress_event(52, 100))
    kept = coalesce(batch)
    assert [e.sequence for e in kept] == [49, 50, 51, 52]
    assert kept[0].output.output.progress == 9
    assert kept[-1].progress.progress == 100
    assert [e.sequence for e in kept] == sorted(e.sequence for e in kept)


def test_coalesce_never_drops_the_replay_a_resume_asked_for():
    batch = [progress_event(n, n) for n in range(1, 101)]
    assert coalesce(batch, replay_through=100) == batch
    # Live events after the replay are coalesced only when they alone exceed the threshold.
    live_few = [progress_event(n, n) for n in range(101, 101 + COALESCE_AFTER)]
    assert coalesce(batch + live_few, replay_through=100) == batch + live_few
    live_many = [progress_event(n, n) for n in range(101, 102 + COALESCE_AFTER)]
    kept = coalesce(batch + live_many, replay_through=100)
    assert [e.sequence for e in kept] == [*range(1, 101), 101 + COALESCE_AFTER]


async def test_closing_the_last_stream_lets_an_inflight_read_finish():
    """A read in flight is never cancelled: on SQLite that would strand the only connection."""
    started, release = asyncio.Event(), asyncio.Event()
    finished: list[str] = []

    async def slow_read(job_id: str, after: int) -> list[tuple[int, bytes]]:
        started.set()
        try:
            await release.wait()
        except asyncio.CancelledError:
            finished.append("cancelled")
            raise
        finished.append("done")
        return []

    hub = EventHub(slow_read, heartbeat_seconds=3600)
    subscription = hub.subscribe(JOB, 0)  # starts a read that now waits
    fetch = subscription.channel.fetching
    await asyncio.wait_for(started.wait(), TIMEOUT)
    subscription.close()
    release.set()
    await asyncio.wait_for(fetch, TIMEOUT)
    assert finished == ["done"]
    await hub.stop()


async def test_offered_events_are_delivered_without_reading_the_log(hub, log):
    subscription = hub.subscribe(JOB, 0)
    await asyncio.wait_for(subscription.channel.fetching, TIMEOUT)  # the catch-up read
    reads_before = len(log.reads)
    log.append(JOB, 2)  # what this process just committed
    for _sequence, payload in log.events[JOB]:
        hub.offer(JOB, job_service_pb2.WatchResponse.FromString(payload))
    assert sequences(await collect(subscription, 2)) == [1, 2]
    assert len(log.reads) == reads_before
    # A stale offer changes nothing; one after a gap makes the hub read the gap.
    hub.offer(JOB, job_service_pb2.WatchResponse.FromString(log.events[JOB][0][1]))
    log.append(JOB, 2)
    hub.offer(JOB, job_service_pb2.WatchResponse.FromString(log.events[JOB][3][1]))
    assert sequences(await collect(subscription, 2)) == [3, 4]
    assert len(log.reads) > reads_before


async def test_joining_a_channel_that_holds_the_cursor_reads_nothing(hub, log):
    log.append(JOB, 3)
    first = hub.subscribe(JOB, 0)
    assert sequences(await collect(first, 3)) == [1, 2, 3]
    reads_before = len(log.reads)
    joined = [hub.subscribe(JOB, 3) for _ in range(50)]
    await asyncio.sleep(0)
    assert len(log.reads) == reads_before
    # They still get what comes next, read once for all of them.
    log.append(JOB, 1)
    hub.poke(JOB)
    for subscription in joined:
        assert sequences(await collect(subscription, 1)) == [4]


async def test_joining_a_channel_behind_the_cursor_catches_up(hub, log):
    log.append(JOB, 2)
    first = hub.subscribe(JOB, 0)
    assert sequences(await collect(first, 2)) == [1, 2]
    # Committed elsewhere, read by the new stream's caller, not yet announced to this hub.
    log.append(JOB, 2)
    late = hub.subscribe(JOB, 3)
    assert sequences(await collect(late, 1)) == [4]
    assert sequences(await collect(first, 2)) == [3, 4]


class RefusingLog(EventLog):
    """The log while the database is away: reads fail until `refusing` is cleared."""

    def __init__(self) -> None:
        super().__init__()
        self.refusing = False
        self.refused = 0
        # Set at the third refused read: the poke's, then the heartbeats' retries.
        self.refused_thrice = asyncio.Event()

    async def read(self, job_id: str, after: int) -> list[tuple[int, bytes]]:
        if self.refusing:
            self.refused += 1
            if self.refused >= 3:
                self.refused_thrice.set()
            raise ConnectionError("the database is away")
        return await super().read(job_id, after)


async def test_a_read_the_database_refused_is_retried_at_the_next_heartbeat():
    # Events committed elsewhere while this replica could not read (a PostgreSQL restart):
    # the poke that announced them was spent on the failed read, and no other may come
    # (the job's last event). Heartbeats read again until the log answers.
    log = RefusingLog()
    hub = EventHub(log.read, heartbeat_seconds=0.02)
    hub.start()
    try:
        subscription = hub.subscribe(JOB, 0)
        log.refusing = True
        log.append(JOB, 2)
        hub.poke(JOB)
        await asyncio.wait_for(log.refused_thrice.wait(), TIMEOUT)
        log.refusing = False
        received = await asyncio.wait_for(drain(subscription, 2), TIMEOUT)
        assert [event.sequence for event in received] == [1, 2]
    finally:
        await hub.stop()
