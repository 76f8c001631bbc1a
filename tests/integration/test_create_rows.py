"""A Create's rows on real databases: built without the ORM's instrumentation (here with
every column set, none to its default, as no use case can: the store's own `new_row`) and, on
PostgreSQL, written through the driver's pipeline, they are stored exactly as built, answer
the caller exactly as a Get reads them back, and wake other replicas' workers."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kiln.v1 import job_pb2, job_service_pb2
from sqlalchemy import inspect, select, update
from sqlalchemy.orm import Mapper

from common.input_policy import InputPolicy
from common.storage.local import LocalStorage
from common.storage.origins import Origins
from common.storage.signing import UrlSigner
from server.domain.errors import InvalidArgument
from server.events.listener import EVENTS_CHANNEL, TASKS_CHANNEL, PostgresListener
from server.jobs.create_batch import CreateBatcher
from server.jobs.service import JobService
from server.store.jobs import IdempotencyKeyTaken, JobRecord, NewJobRows
from server.store.models import Job, Organization, Output, Task
from server.store.row_encoding import new_row
from server.store.store import Store
from tests.support import ORG
from tests.support.wiring import Services

POSTGRES_ONLY = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
MOMENT = datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)


def full_rows(job_id: str, organization_id: str) -> tuple[Job, Output, Task]:
    """A job, output and task with every column set, none to its default."""
    job = new_row(
        Job,
        id=job_id,
        organization_id=organization_id,
        status="PROCESSING",
        stage=3,
        progress=12.5,
        priority=job_pb2.PRIORITY_PREMIUM,
        delayed_start=True,
        input_url="https://example.com/in.mp4",
        concat_input_urls=["https://example.com/a.mp4", "https://example.com/b.mp4"],
        job_metadata={"title": "Ünïcode\ttab", "empty": ""},
        webhook_url="https://example.com/hook",
        idempotency_key=f"key-{job_id}",
        request_hash="ab" * 32,
        output_origin="local",
        input_info=b"\x00\x01binary\xff",
        error=b"\x08\x02",
        estimated_cost_micros=1_234_567,
        actual_cost_micros=7_654_321,
        currency="XXX",  # replaced by the organization's as it goes in
        attempt=2,
        last_sequence=4,
        created_at=MOMENT,
        updated_at=MOMENT,
        probed_at=MOMENT,
        confirmed_at=MOMENT,
        started_at=MOMENT,
        completed_at=MOMENT,
    )
    output = new_row(
        Output,
        id=f"out_{job_id}",
        job_id=job_id,
        position=0,
        spec=job_pb2.OutputSpec(type=job_pb2.OUTPUT_TYPE_HLS).SerializeToString(),
        status="PROCESSING",
        progress=1.5,
        error=b"\x01",
        result=b"\x02",
        estimated_cost_micros=5,
        actual_cost_micros=6,
        variant_pricing=[{"index": 0, "name": "720p", "rate_micros_per_minute": 3}],
    )
    task = new_row(
        Task,
        id=f"tsk_{job_id}",
        job_id=job_id,
        output_id=output.id,
        kind="CHUNK",
        status="LEASED",
        priority=job_pb2.PRIORITY_PREMIUM,
        attempts=1,
        lease_token=2**62 + 1,  # past a double's exact integers
        lease_expires_at=MOMENT,
        worker_id="w-1",
        created_at=MOMENT,
        traceparent="00-" + "1" * 32 + "-" + "2" * 16 + "-01",
        chunk_index=7,
        chunk=b"\x03\x04",
        result=b"\x05",
        progress=50.0,
        finished_at=MOMENT,
    )
    return job, output, task


def columns(row: object) -> dict[str, object]:
    mapper: Mapper[Any] = inspect(type(row))
    values = {prop.key: getattr(row, prop.key) for prop in mapper.column_attrs}
    # SQLite hands back naive datetimes (stored as UTC).
    return {
        key: value.replace(tzinfo=UTC)
        if isinstance(value, datetime) and value.tzinfo is None
        else value
        for key, value in values.items()
    }


def test_new_row_sets_every_column_and_refuses_unknown_ones():
    first = new_row(Job, id="job_1")
    second = new_row(Job, id="job_2")
    assert first.stage == 0 and first.currency == "USD" and first.attempt == 1
    assert first.input_info is None and first.completed_at is None
    # A default made by a function is made per row, not shared.
    assert first.concat_input_urls == [] and first.concat_input_urls is not second.concat_input_urls
    with pytest.raises(TypeError, match="no column bogus"):
        new_row(Task, id="tsk_1", bogus=1)


async def test_new_rows_are_stored_exactly_as_built(store: Store):
    async with store.transaction() as tx:
        await tx.keys.ensure_organization("org_eur")
        await tx.keys.ensure_organization("org_usd")
        await tx.session.execute(
            update(Organization).where(Organization.id == "org_eur").values(currency="EUR")
        )
    built = [full_rows("job_a", "org_eur"), full_rows("job_b", "org_usd")]
    async with store.transaction() as tx:
        await tx.jobs.insert_new_jobs(
            NewJobRows(
                [JobRecord(job, [output]) for job, output, _ in built],
                [task for _, _, task in built],
            )
        )
    # Each job took its own organization's currency, in the row and on the object.
    assert [job.currency for job, _, _ in built] == ["EUR", "USD"]
    async with store.transaction() as tx:
        for job, output, task in built:
            for model, row in ((Job, job), (Output, output), (Task, task)):
                stored = await tx.session.scalar(select(model).where(model.id == row.id))
                assert columns(stored) == columns(row)


async def test_a_taken_key_fails_the_insert_alone_and_the_connection_recovers(store: Store):
    async with store.transaction() as tx:
        await tx.keys.ensure_organization(ORG)
    first, output, task = full_rows("job_first", ORG)
    async with store.transaction() as tx:
        await tx.jobs.insert_new_jobs(NewJobRows([JobRecord(first, [output])], [task]))
    again, output, task = full_rows("job_again", ORG)
    again.idempotency_key = first.idempotency_key
    with pytest.raises(IdempotencyKeyTaken):
        async with store.transaction() as tx:
            await tx.jobs.insert_new_jobs(NewJobRows([JobRecord(again, [output])], [task]))
    # Nothing of the refused job was kept, and the pooled connections still work.
    for _ in range(3):
        async with store.transaction() as tx:
            stored = (await tx.session.scalars(select(Job.id))).all()
            assert stored == ["job_first"]
            assert (
                await tx.session.scalar(select(Task.id).where(Task.job_id == "job_again")) is None
            )


async def test_a_create_answers_what_a_get_then_reads(service: Services):
    async with service.store.transaction() as tx:
        await tx.session.execute(
            update(Organization).where(Organization.id == ORG).values(currency="EUR")
        )
    request = job_service_pb2.CreateRequest(
        input_url=service.input_url,
        concat_input_urls=[service.input_url],
        outputs=[
            job_pb2.OutputSpec(
                type=job_pb2.OUTPUT_TYPE_MP4,
                video=[job_pb2.VideoVariant(codec=job_pb2.VIDEO_CODEC_H264, resolution="240p")],
            ),
            job_pb2.OutputSpec(type=job_pb2.OUTPUT_TYPE_MP3),
        ],
        priority=job_pb2.PRIORITY_PREMIUM,
        delayed_start=True,
        metadata={"title": "a\tb", "n": "1"},
        webhook_url="https://93.184.216.34/hook",
        idempotency_key="answer-as-stored",
    )
    created = await service.jobs.create(ORG, request, "")
    assert created.status == job_pb2.JOB_STATUS_PENDING and len(created.outputs) == 2
    assert created == await service.jobs.get(ORG, created.id)
    async with service.store.transaction() as tx:
        record = await tx.jobs.get_job(ORG, created.id)
        assert record.job.currency == "EUR"
        probe = await tx.tasks.claim_task("w-1", 30)
    assert probe is not None and (probe.job_id, probe.kind) == (created.id, "PROBE")
    assert probe.priority == job_pb2.PRIORITY_PREMIUM
    assert record.job.request_hash  # keyed: its request's fingerprint is kept


async def test_only_a_keyed_create_keeps_a_fingerprint(service: Services):
    request = job_service_pb2.CreateRequest(
        input_url=service.input_url, outputs=[job_pb2.OutputSpec(type=job_pb2.OUTPUT_TYPE_MP3)]
    )
    keyless = await service.jobs.create(ORG, request, "")
    keyed = await service.jobs.create(ORG, request, "header-key")
    async with service.store.reading() as tx:
        assert (await tx.jobs.get_job(ORG, keyless.id)).job.request_hash is None
        assert len((await tx.jobs.get_job(ORG, keyed.id)).job.request_hash or "") == 64


@POSTGRES_ONLY
async def test_creates_and_events_notify_other_replicas(service: Services, database_url: str):
    heard: dict[str, asyncio.Queue[str]] = {
        EVENTS_CHANNEL: asyncio.Queue(),
        TASKS_CHANNEL: asyncio.Queue(),
    }
    listener = PostgresListener(
        database_url.replace("postgresql+psycopg://", "postgresql://"),
        {channel: queue.put_nowait for channel, queue in heard.items()},
    )
    await listener.start()
    try:
        request = job_service_pb2.CreateRequest(
            input_url=service.input_url,
            outputs=[job_pb2.OutputSpec(type=job_pb2.OUTPUT_TYPE_MP3)],
        )
        created = await asyncio.gather(*(service.jobs.create(ORG, request, "") for _ in range(5)))
        # Every batch's commit wakes the workers of other replicas.
        await asyncio.wait_for(heard[TASKS_CHANNEL].get(), 10)
        # Two jobs' events in one transaction: both NOTIFYs go out (in one round trip).
        async with service.store.transaction() as tx:
            for job in created[:2]:
                await service.life.emit(
                    tx, job.id, progress=job_service_pb2.ProgressEvent(progress=1)
                )
        payloads = [await asyncio.wait_for(heard[EVENTS_CHANNEL].get(), 10) for _ in range(2)]
        assert sorted(payload.split(" ")[0] for payload in payloads) == sorted(
            job.id for job in created[:2]
        )
    finally:
        await listener.stop()


def file_input_service(service: Services, storage: Path, roots: Path) -> JobService:
    origins = Origins(
        LocalStorage(storage), UrlSigner(b"secret", "http://127.0.0.1:1", 60), ttl_seconds=60
    )
    return JobService(
        service.life,
        InputPolicy.from_lists([str(roots)], []),
        file_url=origins.url,
        origins=origins,
    )


async def test_file_inputs_in_output_storage_are_checked_when_roots_overlap(
    service: Services, tmp_path
):
    """Output storage inside an input root: a file:// input naming another organization's
    job is refused, one naming the caller's own job is taken."""
    roots = tmp_path / "shared"
    jobs = file_input_service(service, roots / "storage", roots)
    async with service.store.transaction() as tx:
        await tx.keys.ensure_organization("org_other")
    mp3 = [job_pb2.OutputSpec(type=job_pb2.OUTPUT_TYPE_MP3)]
    theirs = await service.jobs.create(
        "org_other", job_service_pb2.CreateRequest(input_url=service.input_url, outputs=mp3), ""
    )
    mine = await service.jobs.create(
        ORG, job_service_pb2.CreateRequest(input_url=service.input_url, outputs=mp3), ""
    )
    for job in (theirs, mine):
        (roots / "storage" / job.id / "out_1").mkdir(parents=True)
        (roots / "storage" / job.id / "out_1" / "a.mp3").write_bytes(b"x")

    def naming(job: job_pb2.Job) -> job_service_pb2.CreateRequest:
        url = f"file://{roots}/storage/{job.id}/out_1/a.mp3"
        return job_service_pb2.CreateRequest(input_url=url, outputs=mp3)

    with pytest.raises(InvalidArgument, match="not one of yours"):
        await jobs.create(ORG, naming(theirs), "")
    assert (await jobs.create(ORG, naming(mine), "")).status == job_pb2.JOB_STATUS_PENDING


async def test_file_inputs_cannot_reach_output_storage_outside_the_roots(
    service: Services, tmp_path
):
    """Disjoint roots (the usual layout): the storage check is skipped for file:// inputs,
    since validation already keeps them inside the input roots, through symlinks too."""
    roots, storage = tmp_path / "inputs_only", tmp_path / "storage"
    (storage / "job_x").mkdir(parents=True)
    (storage / "job_x" / "a.mp3").write_bytes(b"x")
    roots.mkdir()
    (roots / "in.mp3").write_bytes(b"x")
    (roots / "sneaky.mp3").symlink_to(storage / "job_x" / "a.mp3")
    jobs = file_input_service(service, storage, roots)
    assert jobs.creation.admission.file_inputs_may_name_outputs is False
    mp3 = [job_pb2.OutputSpec(type=job_pb2.OUTPUT_TYPE_MP3)]
    created = await jobs.create(
        ORG, job_service_pb2.CreateRequest(input_url=f"file://{roots}/in.mp3", outputs=mp3), ""
    )
    assert created.status == job_pb2.JOB_STATUS_PENDING
    with pytest.raises(InvalidArgument, match="outside the allowed input roots"):
        await jobs.create(
            ORG,
            job_service_pb2.CreateRequest(input_url=f"file://{roots}/sneaky.mp3", outputs=mp3),
            "",
        )


def mp3_request(service: Services) -> job_service_pb2.CreateRequest:
    return job_service_pb2.CreateRequest(
        input_url=service.input_url, outputs=[job_pb2.OutputSpec(type=job_pb2.OUTPUT_TYPE_MP3)]
    )


async def test_a_lone_create_never_waits_between_commits(service: Services):
    # An interval longer than the test's patience: a wait would time out.
    service.jobs.creation.creates = CreateBatcher(
        service.store, service.life.dispatch.tasks_ready, busy_interval=60
    )
    for _ in range(3):
        await asyncio.wait_for(service.jobs.create(ORG, mp3_request(service), ""), 10)
    await asyncio.wait_for(
        asyncio.gather(*(service.jobs.create(ORG, mp3_request(service), "") for _ in range(2))),
        10,
    )
    assert service.jobs.creation.creates.commits == 4


async def test_after_a_busy_batch_the_next_waits_and_shares_its_commit(service: Services):
    # The interval counts from the busy batch's start: 0.3 s was once used up on a loaded CI
    # machine by that batch and the next creates' validation, so the next committed alone.
    batcher = CreateBatcher(service.store, service.life.dispatch.tasks_ready, busy_interval=2.0)
    service.jobs.creation.creates = batcher
    loop = asyncio.get_running_loop()
    started = loop.time()
    first = await asyncio.gather(
        *(service.jobs.create(ORG, mp3_request(service), "") for _ in range(4))
    )
    assert batcher.commits == 1
    # Three more arriving one by one: the first of them waits out the interval, and the
    # ones that came meanwhile go into its commit.
    later = [asyncio.create_task(service.jobs.create(ORG, mp3_request(service), ""))]
    await asyncio.sleep(0)
    later += [
        asyncio.create_task(service.jobs.create(ORG, mp3_request(service), "")) for _ in range(2)
    ]
    second = await asyncio.gather(*later)
    assert loop.time() - started >= 2.0
    assert batcher.commits == 2
    assert len({job.id for job in first + second}) == 7
