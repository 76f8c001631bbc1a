"""The control plane's shortcuts keep their guarantees, on real databases.

- Group commit: concurrent Creates share transactions, yet each caller gets its own job,
  and a refused one (a reused idempotency key) fails alone.
- NOTIFY carries the job's newest sequence and the writer: a replica skips its own echoes
  (no re-read of what it just wrote) and still delivers every event, while another
  replica still hears and delivers every event.
- The progress gate: progress events per job are capped; reports in between renew the
  lease only; status changes and the terminal event are never held back.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import pytest
from kiln.v1 import job_pb2, job_service_pb2
from kiln.worker.v1 import worker_service_pb2 as wpb

from server.domain.errors import AlreadyExists
from server.events.listener import EVENTS_CHANNEL, PostgresListener
from server.store.store import Store
from tests.support import ORG
from tests.support.events import event_reader
from tests.support.specs import mp4_request
from tests.support.wiring import Services

POSTGRES_ONLY = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)


async def test_batched_creates_answer_each_caller_with_its_own_job_and_error(
    service: Services,
):
    jobs = service.jobs
    plain = [mp4_request(service.input_url, metadata={"n": str(n)}) for n in range(12)]
    # The same new key twice with the same request (one job, both answered with it), and
    # once more with another request (ALREADY_EXISTS for that caller alone).
    keyed = mp4_request(service.input_url, idempotency_key="k-1")
    other = mp4_request(service.input_url, idempotency_key="k-1", metadata={"x": "y"})
    calls = [jobs.create(ORG, request, "") for request in plain]
    calls += [jobs.create(ORG, keyed, ""), jobs.create(ORG, keyed, "")]
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(job, job_pb2.Job) for job in results[:12])
    # Read as jobs from here: the plain ones were just checked, and a twin that is an error
    # fails on `.id` below as before.
    answers = cast(list[job_pb2.Job], results)
    plain_jobs, twins = answers[:12], answers[12:]
    # Each caller its own job: its own metadata, a distinct id.
    assert [job.metadata["n"] for job in plain_jobs] == [str(n) for n in range(12)]
    assert len({job.id for job in plain_jobs}) == 12
    assert twins[0].id == twins[1].id
    with pytest.raises(AlreadyExists):
        await jobs.create(ORG, other, "")
    # They did share transactions (group commit), and every job is stored once.
    assert jobs.creation.creates.commits < jobs.creation.creates.jobs
    stored = await jobs.list(ORG, job_service_pb2.ListRequest(page_size=100))
    assert len(stored.jobs) == 13
    for job in plain_jobs:
        got = await jobs.get(ORG, job.id)
        assert got.status == job_pb2.JOB_STATUS_PENDING and got.outputs[0].id


async def test_a_batch_with_a_racing_key_still_inserts_the_others(service: Services):
    """Two Creates racing for one new key in the same batch fail the batch's INSERT; the
    batch is redone job by job, so the others are stored and the loser gets the winner."""
    jobs = service.jobs
    keyed = mp4_request(service.input_url, idempotency_key="race")
    calls = [jobs.create(ORG, mp4_request(service.input_url), "") for _ in range(5)]
    calls.insert(2, jobs.create(ORG, keyed, ""))
    calls.append(jobs.create(ORG, keyed, ""))
    results = await asyncio.gather(*calls)
    assert results[2].id == results[-1].id
    others = [job.id for index, job in enumerate(results) if index not in (2, len(results) - 1)]
    assert len(set(others)) == 5
    stored = await jobs.list(ORG, job_service_pb2.ListRequest(page_size=100))
    assert len(stored.jobs) == 6


class Replica:
    """One server process's use cases and LISTEN connection on a shared database."""

    def __init__(self, store: Store, database_url: str, root: Path) -> None:
        self.reads = 0
        self.read_done = asyncio.Event()
        # Every events notification this replica handled, once it handled it.
        self.notifications: asyncio.Queue[str] = asyncio.Queue()
        read = event_reader(store)

        async def read_events(job_id: str, after: int) -> list[tuple[int, bytes]]:
            # Counted: a replica must not re-read what it just wrote itself.
            self.reads += 1
            rows = await read(job_id, after)
            self.read_done.set()
            return rows

        def on_events(payload: str) -> None:
            self.life.on_events_notification(payload)
            self.notifications.put_nowait(payload)

        self.services = Services(store, root, read_events=read_events)
        self.hub = self.services.hub
        self.life = self.services.life
        self.listener = PostgresListener(
            database_url.replace("postgresql+psycopg://", "postgresql://"),
            {EVENTS_CHANNEL: on_events},
        )


@POSTGRES_ONLY
async def test_a_replica_skips_its_own_notify_echo_and_still_sees_every_event(
    store: Store, database_url: str, tmp_path
):
    writer, other = Replica(store, database_url, tmp_path), Replica(store, database_url, tmp_path)
    for replica in (writer, other):
        replica.hub.start()
        await replica.listener.start()
    job = await writer.services.create()
    mine = writer.hub.subscribe(job.id, 0)
    theirs = other.hub.subscribe(job.id, 0)
    try:
        # Subscribing reads once (to catch up); what follows must add no read of the writer's.
        await asyncio.wait_for(writer.read_done.wait(), 10)
        reads_before = writer.reads
        for n in range(1, 6):
            async with store.transaction() as tx:
                # Two events in one transaction: one NOTIFY carries the newer sequence.
                await writer.life.emit(
                    tx, job.id, progress=job_service_pb2.ProgressEvent(progress=n)
                )
                await writer.life.emit(
                    tx, job.id, progress=job_service_pb2.ProgressEvent(progress=n + 0.5)
                )
        expected = [n + half for n in range(1, 6) for half in (0.0, 0.5)]
        for subscription in (mine, theirs):
            seen: list[float] = []
            while len(seen) < len(expected):
                batch = await asyncio.wait_for(subscription.next_batch(), 10)
                seen += [event.progress.progress for event in batch or []]
            assert seen == expected
        # The writer's own five echoes arrived and were skipped, none re-read the log.
        for _ in range(5):  # one NOTIFY per transaction, not per event
            await asyncio.wait_for(writer.notifications.get(), 10)
        assert writer.life.echoes_skipped == 5
        assert writer.reads == reads_before
        assert other.reads >= 1  # the other replica did read what NOTIFY announced
    finally:
        mine.close()
        theirs.close()
        for replica in (writer, other):
            await replica.listener.stop()
            await replica.hub.stop()


def test_notification_payload_round_trip_and_old_format():
    from server.jobs.lifecycle import events_notification, parse_events_notification

    assert parse_events_notification(events_notification("job_1", 7, "abc")) == ("job_1", 7, "abc")
    # A bare job id (a replica of the version before) still pokes.
    assert parse_events_notification("job_1") == ("job_1", 0, "")


async def test_capped_progress_renews_the_lease_and_never_drops_a_status_change(
    store: Store, tmp_path
):
    services = Services(store, tmp_path, lease_seconds=30)
    now = [1000.0]
    services.tasks.progress_gate.clock = lambda: now[0]
    job, task = await services.probed_transcode()
    before = await task_lease(store, task.id)
    for step in range(1, 21):  # 20 reports within 0.1 s: one is logged
        now[0] += 0.005
        canceled = await services.tasks.report_progress(
            wpb.ReportProgressRequest(
                task_id=task.id, lease_token=task.lease_token, progress=step * 4
            )
        )
        assert canceled is False
    # Every report renewed the lease, logged or not.
    assert await task_lease(store, task.id) > before
    now[0] += 1.0  # the next one is due again
    await services.tasks.report_progress(
        wpb.ReportProgressRequest(task_id=task.id, lease_token=task.lease_token, progress=85)
    )
    await services.tasks.complete_task(services.finished(task))
    async with store.transaction() as tx:
        events = [
            job_service_pb2.WatchResponse.FromString(payload)
            for _, payload in await tx.events.events_after(job.id, 0)
        ]
    progress = [e.progress.progress for e in events if e.WhichOneof("event") == "progress"]
    assert progress == [4.0, 85.0, 100.0]
    changes = [
        (e.status_change.from_status, e.status_change.to_status)
        for e in events
        if e.WhichOneof("event") == "status_change"
    ]
    assert changes[-1] == (job_pb2.JOB_STATUS_PROCESSING, job_pb2.JOB_STATUS_COMPLETED)
    assert events[-1].WhichOneof("event") == "completed"
    # A canceled task is told so by a heartbeat-only report too.
    job2, task2 = await services.probed_transcode()
    await services.tasks.report_progress(
        wpb.ReportProgressRequest(task_id=task2.id, lease_token=task2.lease_token, progress=5)
    )
    await services.jobs.cancel(ORG, job2.id)
    assert await services.tasks.report_progress(
        wpb.ReportProgressRequest(task_id=task2.id, lease_token=task2.lease_token, progress=6)
    )


async def task_lease(store: Store, task_id: str) -> datetime:
    async with store.transaction() as tx:
        task = await tx.tasks.task(task_id)
    moment = task.lease_expires_at
    assert moment is not None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
