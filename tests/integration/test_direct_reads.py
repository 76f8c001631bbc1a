"""Get and Watch read a job directly (Store.read_job: no ORM session, no transaction).

On both databases: the direct read holds what the ORM read holds, sees a commit made just
before it, and finds another organization's job NotFound. On SQLite it runs on the event
loop over its own connection: a writer's open transaction does not hold it up, and a
locked database sends it to the engine instead of blocking the loop. On PostgreSQL a
connection the server dropped is replaced. Watch reads the job once and still misses
nothing committed between that read and its subscription, and a resumed Watch's replay
comes whole before any heartbeat.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from dataclasses import fields

import psycopg
import pytest
from kiln.v1 import job_pb2, job_service_pb2
from kiln.worker.v1 import worker_service_pb2 as wpb

from server.domain.errors import NotFound
from server.jobs import views
from server.store.direct_reads import DIRECT_READ_APPLICATION
from server.store.job_snapshots import JobRow, OutputRow
from server.store.store import now
from tests.support import ORG
from tests.support.events import job_with_long_log
from tests.support.specs import mp4_request
from tests.support.wiring import Services

TIMEOUT = 30.0
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
POSTGRES_ONLY = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)


def two_mp4s_request(input_url: str, **fields) -> job_service_pb2.CreateRequest:
    """A job with two outputs: a read must bring back every output row of its job."""
    request = mp4_request(input_url, **fields)
    request.outputs.append(request.outputs[0])
    return request


async def make_job(service: Services, **fields) -> job_pb2.Job:
    return await service.jobs.create(ORG, two_mp4s_request(service.input_url, **fields), "")


async def test_the_direct_read_holds_what_the_orm_read_holds(service: Services):
    job = await make_job(service, metadata={"team": "video"}, idempotency_key="k-1")
    moment = now()
    variant = {
        "index": 0,
        "name": "240p",
        "priced_height": 240,
        "fps": 30.0,
        "rate_micros_per_minute": 1500,
        "dropped": False,
        "estimated_micros": 5,
        "estimated_seconds": 2.0,
        "actual_micros": None,
        "billed_seconds": 0.0,
    }
    # Every column given a value of its type, so each one's decoding is compared.
    async with service.store.transaction() as tx:
        await tx.jobs.update_job(
            job.id,
            concat_input_urls=["file:///a.mp4", "file:///b.mp4"],
            input_info=job_pb2.InputInfo(container="mp4", duration_seconds=2.0).SerializeToString(),
            error=job_pb2.JobError(code="INPUT_UNREADABLE", message="no").SerializeToString(),
            estimated_cost_micros=12_000_000_000,
            actual_cost_micros=7,
            delayed_start=True,
            probed_at=moment,
            confirmed_at=moment,
            started_at=moment,
            completed_at=moment,
        )
        await tx.outputs.update_output(
            job.outputs[0].id,
            progress=12.5,
            error=job_pb2.JobError(code="ENCODE_FAILED").SerializeToString(),
            result=wpb.TranscodeResult(notes=["done"], encoded_seconds=2.0).SerializeToString(),
            estimated_cost_micros=1,
            actual_cost_micros=2,
            variant_pricing=[variant],
        )
    async with service.store.transaction() as tx:
        orm = await tx.jobs.get_job(ORG, job.id)
    direct = await service.store.read_job(ORG, job.id)

    for field in fields(JobRow):
        loaded, read = getattr(orm.job, field.name), getattr(direct.job, field.name)
        assert read == loaded, field.name
        assert type(read) is type(loaded), field.name
    assert direct.job.created_at.utcoffset() is not None
    assert [output.id for output in direct.outputs] == [output.id for output in orm.outputs]
    for loaded_output, read_output in zip(orm.outputs, direct.outputs, strict=True):
        for field in fields(OutputRow):
            loaded, read = getattr(loaded_output, field.name), getattr(read_output, field.name)
            assert read == loaded, field.name
            assert type(read) is type(loaded), field.name
    # The transaction's rows become the same read type, and the same answer.
    assert orm.snapshot() == direct
    assert views.job_message(direct) == views.job_message(orm.snapshot())


async def test_the_direct_read_sees_each_commit_made_just_before_it(service: Services):
    job = await make_job(service)
    for progress in (10.0, 20.0, 30.0):
        async with service.store.transaction() as tx:
            await tx.jobs.update_job(job.id, progress=progress)
        # The same connection every time: it must not hold on to an older snapshot.
        assert (await service.store.read_job(ORG, job.id)).job.progress == progress
    canceled = await service.jobs.cancel(ORG, job.id)
    got = await service.jobs.get(ORG, job.id)
    assert got.status == canceled.status == job_pb2.JOB_STATUS_CANCELED
    assert [output.status for output in got.outputs] == [job_pb2.OUTPUT_STATUS_CANCELED] * 2


async def test_another_organizations_job_is_not_found(service: Services):
    job = await make_job(service)
    async with service.store.transaction() as tx:
        await tx.keys.ensure_organization("org_other")
    with pytest.raises(NotFound):
        await service.store.read_job("org_other", job.id)
    with pytest.raises(NotFound):
        await service.jobs.get("org_other", job.id)
    with pytest.raises(NotFound):
        await service.jobs.watch("org_other", job_service_pb2.WatchRequest(id=job.id))
    with pytest.raises(NotFound):
        await service.jobs.get(ORG, "job_missing")
    assert (await service.jobs.get(ORG, job.id)).id == job.id


@SQLITE_ONLY
async def test_an_open_write_transaction_does_not_hold_up_a_direct_read(service: Services):
    """SQLite's engine has one connection, held here by an open transaction: a read through
    the engine would wait for it; the direct read answers at once with the last commit."""
    job = await make_job(service)
    async with service.store.transaction() as tx:
        await tx.jobs.update_job(job.id, progress=50.0)
        read = await asyncio.wait_for(service.store.read_job(ORG, job.id), 5)
        assert read.job.progress == 0.0
    assert service.store.direct_reads.deferred == 0
    assert (await service.store.read_job(ORG, job.id)).job.progress == 50.0


@SQLITE_ONLY
async def test_a_locked_database_sends_the_read_to_the_engine(database_url: str, service: Services):
    """An exclusive lock (another process in exclusive locking mode) would make the direct
    read wait: it fails at once instead, and the read waits in the engine, off the loop."""
    store = service.store
    job = await make_job(service)
    await store.engine.dispose()  # none of our connections open: the lock can be taken
    holder = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        holder.execute("PRAGMA locking_mode=EXCLUSIVE")
        holder.execute("BEGIN EXCLUSIVE")
        started = time.monotonic()
        read = asyncio.create_task(store.read_job(ORG, job.id))
        await asyncio.sleep(0)  # the task's first step: the direct attempt, then the engine
        assert store.direct_reads.deferred == 1
        assert not read.done()
        # Refused at once, not after a busy wait on the loop (the engine's would be 30 s).
        assert time.monotonic() - started < 1
    finally:
        holder.close()
    snapshot = await asyncio.wait_for(read, 10)
    assert snapshot.job.id == job.id and len(snapshot.outputs) == 2
    # The lock gone, the next read is direct again.
    await store.read_job(ORG, job.id)
    assert store.direct_reads.deferred == 1


@POSTGRES_ONLY
async def test_a_connection_the_server_dropped_is_replaced(database_url: str, service: Services):
    job = await make_job(service)
    await service.store.read_job(ORG, job.id)

    def direct_backends(admin: psycopg.Connection) -> list[int]:
        rows = admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND datname = %s",
            (DIRECT_READ_APPLICATION, database_url.rsplit("/", 1)[1]),
        ).fetchall()
        return [pid for (pid,) in rows]

    with psycopg.connect(database_url, autocommit=True) as admin:
        (dropped,) = direct_backends(admin)
        row = admin.execute("SELECT pg_terminate_backend(%s, 5000)", (dropped,)).fetchone()
        assert row is not None
        (ended,) = row
        assert ended
        assert (await service.store.read_job(ORG, job.id)).job.id == job.id
        (replacement,) = direct_backends(admin)
        assert replacement != dropped


@POSTGRES_ONLY
async def test_a_read_cancelled_in_flight_leaves_no_busy_connection_behind(service: Services):
    """A Get whose caller went away is cancelled while PostgreSQL answers: its connection
    must not be handed to the next read with a query still running on it."""
    job = await make_job(service)
    await service.store.read_job(ORG, job.id)  # a connection open and idle
    for _ in range(3):
        read = asyncio.create_task(service.store.read_job(ORG, job.id))
        await asyncio.sleep(0)  # the task's first step: the query sent, its answer awaited
        read.cancel()
        with pytest.raises(asyncio.CancelledError):
            await read
        assert (await service.store.read_job(ORG, job.id)).job.id == job.id


def cancel_right_after_each_read(service: Services, monkeypatch) -> None:
    """Every read of a job is followed at once by a Cancel of it: what Watch subscribes to
    after its read was committed in between."""
    read_job = service.store.read_job

    async def read_then_cancel(organization_id: str, job_id: str):
        snapshot = await read_job(organization_id, job_id)
        await service.jobs.cancel(ORG, job_id)
        return snapshot

    monkeypatch.setattr(service.store, "read_job", read_then_cancel)


async def test_watch_misses_nothing_committed_between_its_read_and_its_subscription(
    service: Services, monkeypatch
):
    """The job is canceled right after Watch read it, before the stream subscribed: the
    snapshot is the job as read, and the cancel's events still follow it."""
    job = await make_job(service)
    cancel_right_after_each_read(service, monkeypatch)

    async def collect(request):
        return [event async for event in await service.jobs.watch(ORG, request)]

    events = await asyncio.wait_for(collect(job_service_pb2.WatchRequest(id=job.id)), TIMEOUT)
    snapshot = events[0]
    assert snapshot.snapshot.job.status == job_pb2.JOB_STATUS_PENDING
    assert [event.sequence for event in events[1:]] == list(
        range(snapshot.sequence + 1, events[-1].sequence + 1)
    )
    kinds = [event.WhichOneof("event") for event in events[1:]]
    assert kinds[-2:] == ["status_change", "completed"]
    assert events[-1].completed.job.status == job_pb2.JOB_STATUS_CANCELED


async def test_a_resumed_watch_misses_nothing_committed_after_its_read(
    service: Services, monkeypatch
):
    job = await make_job(service)
    async with service.store.transaction() as tx:
        first = (await tx.jobs.get_job(ORG, job.id)).job.last_sequence
    cancel_right_after_each_read(service, monkeypatch)
    request = job_service_pb2.WatchRequest(id=job.id, after_sequence=first)

    async def collect():
        return [event async for event in await service.jobs.watch(ORG, request)]

    events = await asyncio.wait_for(collect(), TIMEOUT)
    async with service.store.transaction() as tx:
        last = (await tx.jobs.get_job(ORG, job.id)).job.last_sequence
    assert [event.sequence for event in events] == list(range(first + 1, last + 1))
    assert events[-1].completed.job.status == job_pb2.JOB_STATUS_CANCELED


async def test_a_resumed_watch_gets_its_whole_replay_before_any_heartbeat(
    service: Services, tmp_path
):
    """With no read between subscribing and waiting, a heartbeat falling due before the hub
    has read the log must not come first (the replay is what the client asked for)."""
    job_id, last = await job_with_long_log(service)
    # A second server on the same store, its heartbeat due at almost every turn.
    beating = Services(service.store, tmp_path, heartbeat_seconds=0.001, file_url=_no_url)
    beating.hub.start()
    try:
        for _ in range(10):
            request = job_service_pb2.WatchRequest(id=job_id, after_sequence=0)
            events = [event async for event in await beating.jobs.watch(ORG, request)]
            assert [event.sequence for event in events] == list(range(1, last + 1))
    finally:
        await beating.hub.stop()


def _no_url(origin: str, job_id: str, output_id: str, path: str):
    raise AssertionError("a canceled job has no files to sign")
