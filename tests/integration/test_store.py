"""The store against real databases: SQLite and PostgreSQL (the `database_url` fixture)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from kiln.v1 import job_pb2
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from server.domain import ids
from server.domain.errors import FailedPrecondition, NotFound, StaleLease
from server.domain.states import JobStatus, OutputStatus, TaskStatus
from server.store.models import ApiKey, Job, Task
from server.store.store import API_KEY_PREFIX, IdempotencyKeyTaken, Store
from tests.support import ORG
from tests.support.rows import make_job, make_outputs

OTHER_ORG = "org_two"
TIMEOUT = 20.0
POSTGRES_ONLY = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
BASE_TIME = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture
async def second_store(store: Store, database_url: str) -> AsyncIterator[Store]:
    """Another Store (engine, pool) on the same database, as a second server process has."""
    other = Store(database_url)
    yield other
    await other.close()


def make_task(job: Job, priority: int, created_at: datetime, status: str = "QUEUED") -> Task:
    return Task(
        id=ids.task_id(),
        job_id=job.id,
        output_id=None,
        kind="PROBE",
        status=status,
        priority=priority,
        attempts=0,
        lease_token=0,
        worker_id="",
        created_at=created_at,
    )


async def add_job(store: Store, job: Job | None = None, outputs: int = 1) -> Job:
    job = job or make_job()
    async with store.transaction() as tx:
        await tx.keys.ensure_organization(job.organization_id)
        await tx.jobs.insert_job(job, make_outputs(job, outputs))
    return job


async def status_of(store: Store, job_id: str) -> str:
    async with store.transaction() as tx:
        return (await tx.jobs.get_job(None, job_id)).job.status


# -- jobs -----------------------------------------------------------------------------


async def test_insert_job_with_outputs(store):
    job = make_job()
    async with store.transaction() as tx:
        await tx.keys.ensure_organization(ORG, "Org One")
        await tx.keys.ensure_organization(ORG)  # idempotent
        outputs = make_outputs(job, 3)
        await tx.jobs.insert_job(job, list(reversed(outputs)))

    async with store.transaction() as tx:
        record = await tx.jobs.get_job(ORG, job.id)
        assert record.job.status == JobStatus.PENDING
        assert record.job.job_metadata == {"team": "video"}
        assert record.job.created_at.tzinfo is not None
        assert [o.id for o in record.outputs] == [o.id for o in outputs]  # by position
        assert [o.position for o in record.outputs] == [0, 1, 2]
        assert await tx.keys.organization_currency(ORG) == "USD"
        with pytest.raises(NotFound):
            await tx.jobs.get_job(OTHER_ORG, job.id)
        with pytest.raises(NotFound):
            await tx.jobs.get_job(ORG, "job_missing")


async def test_job_needs_an_existing_organization(store):
    with pytest.raises(IntegrityError):
        async with store.transaction() as tx:
            await tx.jobs.insert_job(make_job("org_never_created"), [])


# -- guarded transitions --------------------------------------------------------------


async def test_allowed_transition_writes_status_and_values(store):
    job = await add_job(store)
    async with store.transaction() as tx:
        previous = await tx.jobs.transition_job(
            job.id, JobStatus.PROBING, stage=job_pb2.JOB_STAGE_PROBING
        )
    assert previous == JobStatus.PENDING
    async with store.transaction() as tx:
        record = await tx.jobs.get_job(ORG, job.id)
    assert record.job.status == JobStatus.PROBING
    assert record.job.stage == job_pb2.JOB_STAGE_PROBING
    assert record.job.updated_at >= job.updated_at


async def test_forbidden_transition_fails_and_leaves_status(store):
    job = await add_job(store)
    async with store.transaction() as tx:
        await tx.jobs.transition_job(job.id, JobStatus.PROBING)

    with pytest.raises(FailedPrecondition) as raised:
        async with store.transaction() as tx:
            await tx.jobs.transition_job(job.id, JobStatus.COMPLETED)
    assert "PROBING" in raised.value.message
    assert "COMPLETED" in raised.value.message
    assert await status_of(store, job.id) == JobStatus.PROBING


async def test_forbidden_transition_rolls_back_the_whole_transaction(store):
    job = await add_job(store)
    with pytest.raises(FailedPrecondition):
        async with store.transaction() as tx:
            await tx.jobs.transition_job(job.id, JobStatus.PROBING)  # allowed
            await tx.jobs.transition_job(job.id, JobStatus.PROBING)  # PROBING -> PROBING is not
    assert await status_of(store, job.id) == JobStatus.PENDING


async def test_walk_to_completed_then_no_retry(store):
    job = await add_job(store)
    for target in (JobStatus.PROBING, JobStatus.PROCESSING, JobStatus.COMPLETED):
        async with store.transaction() as tx:
            await tx.jobs.transition_job(job.id, target)
        assert await status_of(store, job.id) == target
    for target in (JobStatus.PENDING, JobStatus.CANCELED, JobStatus.FAILED):
        with pytest.raises(FailedPrecondition):
            async with store.transaction() as tx:
                await tx.jobs.transition_job(job.id, target)
    assert await status_of(store, job.id) == JobStatus.COMPLETED


async def test_retry_from_failed(store):
    job = await add_job(store, make_job(status=JobStatus.FAILED))
    async with store.transaction() as tx:
        await tx.jobs.transition_job(job.id, JobStatus.PENDING, attempt=2)
    async with store.transaction() as tx:
        record = await tx.jobs.get_job(ORG, job.id)
    assert (record.job.status, record.job.attempt) == (JobStatus.PENDING, 2)


async def test_transition_of_missing_job_is_not_found(store):
    with pytest.raises(NotFound):
        async with store.transaction() as tx:
            await tx.jobs.transition_job("job_missing", JobStatus.CANCELED)


async def _attempt(store: Store, job_id: str, target: JobStatus) -> JobStatus | None:
    try:
        async with store.transaction() as tx:
            await tx.jobs.transition_job(job_id, target)
    except FailedPrecondition:
        return None
    return target


@POSTGRES_ONLY
async def test_racing_transitions_exactly_one_wins(store, second_store):
    jobs = [await add_job(store, make_job(status=JobStatus.PROCESSING)) for _ in range(8)]
    for job in jobs:
        results = await asyncio.wait_for(
            asyncio.gather(
                _attempt(store, job.id, JobStatus.COMPLETED),
                _attempt(second_store, job.id, JobStatus.CANCELED),
            ),
            TIMEOUT,
        )
        winners = [result for result in results if result is not None]
        assert len(winners) == 1, results
        assert await status_of(store, job.id) == winners[0]


async def _wait_for_lock_waiter(store: Store) -> None:
    """Poll until some backend of this database waits on a row lock."""
    query = text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )

    async def poll() -> None:
        while True:
            async with store.transaction() as tx:
                if await tx.session.scalar(query):
                    return
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), TIMEOUT)


@POSTGRES_ONLY
async def test_blocked_transition_loses_after_the_winner_commits(store, second_store):
    """The loser really waits on the winner's row lock, then re-checks the guard."""
    job = await add_job(store, make_job(status=JobStatus.PROCESSING))
    updated = asyncio.Event()
    release = asyncio.Event()

    async def winner() -> None:
        async with store.transaction() as tx:
            await tx.jobs.transition_job(job.id, JobStatus.COMPLETED)
            updated.set()
            await release.wait()

    async def loser() -> FailedPrecondition | None:
        await updated.wait()
        try:
            async with second_store.transaction() as tx:
                await tx.jobs.transition_job(job.id, JobStatus.CANCELED)
        except FailedPrecondition as error:
            return error
        return None

    async def referee() -> None:
        await updated.wait()
        await _wait_for_lock_waiter(store)
        release.set()

    _, error, _ = await asyncio.wait_for(asyncio.gather(winner(), loser(), referee()), TIMEOUT)
    assert isinstance(error, FailedPrecondition)
    assert "CANCELED" in error.message
    assert await status_of(store, job.id) == JobStatus.COMPLETED


@POSTGRES_ONLY
async def test_a_locked_read_after_a_wait_sees_what_the_holder_committed(store, second_store):
    """Two outputs completing at once: the second transaction, which waited for the job's
    lock, must see the first's output COMPLETED, or neither ends the job (a job was held at
    99 % with every output COMPLETED in CI: the join re-read only the locked job row)."""
    job = await add_job(store, make_job(status=JobStatus.PROCESSING), outputs=2)
    holding = asyncio.Event()
    release = asyncio.Event()

    async def holder() -> str:
        async with store.transaction() as tx:
            record = await tx.jobs.get_job(None, job.id, lock=True)
            first = record.outputs[0].id
            await tx.outputs.update_output(first, status=str(OutputStatus.COMPLETED))
            holding.set()
            await release.wait()
        return first

    async def waiter() -> dict[str, str]:
        await holding.wait()
        async with second_store.transaction() as tx:
            record = await tx.jobs.get_job(None, job.id, lock=True)
            return {output.id: output.status for output in record.outputs}

    async def referee() -> None:
        await holding.wait()
        await _wait_for_lock_waiter(store)
        release.set()

    first, seen, _ = await asyncio.wait_for(asyncio.gather(holder(), waiter(), referee()), TIMEOUT)
    assert seen[first] == OutputStatus.COMPLETED, seen


# -- events ---------------------------------------------------------------------------


def payload_for(sequence: int) -> bytes:
    return f"event {sequence}".encode()


async def _append(store: Store, job_id: str) -> int:
    async with store.transaction() as tx:
        return await tx.events.append_event(job_id, payload_for)


async def test_append_event_sequences_and_read_back(store):
    job = await add_job(store)
    assert [await _append(store, job.id) for _ in range(5)] == [1, 2, 3, 4, 5]

    # A rolled-back append does not burn a sequence.
    with pytest.raises(RuntimeError):
        async with store.transaction() as tx:
            assert await tx.events.append_event(job.id, payload_for) == 6
            raise RuntimeError("abort")
    assert await _append(store, job.id) == 6

    async with store.transaction() as tx:
        assert await tx.events.events_after(job.id, 3) == [(s, payload_for(s)) for s in (4, 5, 6)]
        assert await tx.events.events_after(job.id, 0, limit=2) == [
            (1, b"event 1"),
            (2, b"event 2"),
        ]
        assert await tx.events.events_after(job.id, 6) == []
        assert (await tx.jobs.get_job(ORG, job.id)).job.last_sequence == 6


async def test_sequences_are_per_job(store):
    first, second = await add_job(store), await add_job(store)
    assert [await _append(store, first.id) for _ in range(3)] == [1, 2, 3]
    assert [await _append(store, second.id) for _ in range(2)] == [1, 2]


@POSTGRES_ONLY
async def test_concurrent_appenders_from_two_stores_leave_no_gaps(store, second_store):
    job = await add_job(store)
    per_store = 15
    appends = [_append(s, job.id) for _ in range(per_store) for s in (store, second_store)]
    sequences = await asyncio.wait_for(asyncio.gather(*appends), TIMEOUT)
    total = 2 * per_store
    assert sorted(sequences) == list(range(1, total + 1))
    async with store.transaction() as tx:
        rows = await tx.events.events_after(job.id, 0)
        assert rows == [(s, payload_for(s)) for s in range(1, total + 1)]
        assert (await tx.jobs.get_job(ORG, job.id)).job.last_sequence == total


# -- tasks ----------------------------------------------------------------------------


async def _claim(store: Store, worker: str) -> Task | None:
    async with store.transaction() as tx:
        return await tx.tasks.claim_task(worker, lease_seconds=60)


async def test_claim_in_priority_then_age_order(store):
    job = await add_job(store)
    standard_old = make_task(job, job_pb2.PRIORITY_STANDARD, BASE_TIME)
    economy = make_task(job, job_pb2.PRIORITY_ECONOMY, BASE_TIME - timedelta(hours=1))
    standard_new = make_task(job, job_pb2.PRIORITY_STANDARD, BASE_TIME + timedelta(seconds=1))
    premium = make_task(job, job_pb2.PRIORITY_PREMIUM, BASE_TIME + timedelta(seconds=2))
    async with store.transaction() as tx:
        await tx.tasks.insert_tasks([standard_old, economy, standard_new, premium])

    claimed = [await _claim(store, "w1") for _ in range(4)]
    assert [task.id for task in claimed] == [
        premium.id,
        standard_old.id,
        standard_new.id,
        economy.id,
    ]
    assert all(task.status == "LEASED" and task.worker_id == "w1" for task in claimed)
    assert await _claim(store, "w1") is None


async def test_claim_sets_lease_and_a_fresh_unguessable_token_on_every_claim(store):
    job = await add_job(store)
    task = make_task(job, job_pb2.PRIORITY_STANDARD, BASE_TIME)
    async with store.transaction() as tx:
        await tx.tasks.insert_tasks([task])

    before = datetime.now(UTC)
    first = await _claim(store, "w1")
    assert (first.id, first.attempts) == (task.id, 1)
    # Random 62-bit tokens: a worker that lost its lease cannot guess the next one.
    assert first.lease_token > 2**20
    expires = first.lease_expires_at
    expires = expires if expires.tzinfo else expires.replace(tzinfo=UTC)
    assert before + timedelta(seconds=59) <= expires <= datetime.now(UTC) + timedelta(seconds=61)
    assert await _claim(store, "w2") is None  # leased: not claimable

    async with store.transaction() as tx:
        # Ending a lease needs its token: a stale one changes nothing.
        assert not await tx.tasks.end_lease(task.id, first.lease_token + 1, TaskStatus.QUEUED)
        assert await tx.tasks.end_lease(task.id, first.lease_token, TaskStatus.QUEUED)
        # QUEUED -> QUEUED is not a transition the table allows.
        assert not await tx.tasks.end_lease(task.id, first.lease_token, TaskStatus.QUEUED)
    second = await _claim(store, "w2")
    assert (second.id, second.attempts, second.worker_id) == (task.id, 2, "w2")
    assert second.lease_token != first.lease_token

    async with store.transaction() as tx:
        assert (await tx.tasks.leased_task(task.id, second.lease_token)).worker_id == "w2"
        with pytest.raises(StaleLease):
            await tx.tasks.leased_task(task.id, first.lease_token)
        with pytest.raises(StaleLease):
            await tx.tasks.leased_task(task.id, second.lease_token + 1)
        with pytest.raises(NotFound):
            await tx.tasks.leased_task("tsk_missing", 1)


async def test_reaper_update_takes_only_a_lease_still_expired_under_the_same_token(store):
    """The guarded UPDATE itself refuses a renewed lease, whatever the caller read before."""
    job = await add_job(store)
    task = make_task(job, job_pb2.PRIORITY_STANDARD, BASE_TIME)
    async with store.transaction() as tx:
        await tx.tasks.insert_tasks([task])
        expired = await tx.tasks.claim_task("w1", lease_seconds=-5)
    async with store.transaction() as tx:
        [candidate] = await tx.tasks.expired_leases()
        assert candidate.id == task.id
        # The worker renews before the reaper acts on what it read.
        assert await tx.tasks.extend_lease(task.id, expired.lease_token, 60)
        assert not await tx.tasks.take_back_expired(task.id, expired.lease_token, TaskStatus.QUEUED)
        assert await tx.tasks.expired_leases() == []
    async with store.transaction() as tx:
        assert not await tx.tasks.extend_lease(task.id, expired.lease_token + 1, -5)  # stale token
        assert await tx.tasks.extend_lease(task.id, expired.lease_token, -5)
        assert not await tx.tasks.take_back_expired(
            task.id, expired.lease_token + 1, TaskStatus.QUEUED
        )
        assert await tx.tasks.take_back_expired(task.id, expired.lease_token, TaskStatus.QUEUED)
        assert (await tx.tasks.task(task.id)).status == TaskStatus.QUEUED


async def test_status_columns_refuse_values_outside_the_transition_tables(store):
    """The CHECK constraints from migration 0004 stand behind the guarded updates."""
    job = await add_job(store)
    with pytest.raises(IntegrityError):
        async with store.transaction() as tx:
            await tx.jobs.update_job(job.id, status="DONE-ISH")
    with pytest.raises(IntegrityError):
        async with store.transaction() as tx:
            await tx.tasks.insert_tasks(
                [make_task(job, job_pb2.PRIORITY_STANDARD, BASE_TIME, "LOST")]
            )


@POSTGRES_ONLY
async def test_concurrent_claimers_never_share_a_task(store, second_store):
    job = await add_job(store)
    count = 24
    async with store.transaction() as tx:
        await tx.tasks.insert_tasks(
            [
                make_task(job, job_pb2.PRIORITY_STANDARD, BASE_TIME + timedelta(seconds=i))
                for i in range(count)
            ]
        )

    async def drain(source: Store, worker: str) -> list[str]:
        taken = []
        while (task := await _claim(source, worker)) is not None:
            taken.append(task.id)
        return taken

    claimers = [
        drain(s, f"{name}-{i}") for i in range(4) for s, name in ((store, "a"), (second_store, "b"))
    ]
    results = await asyncio.wait_for(asyncio.gather(*claimers), TIMEOUT)
    taken = [task_id for result in results for task_id in result]
    assert len(taken) == len(set(taken)) == count
    async with store.transaction() as tx:
        leased = await tx.session.scalar(
            select(func.count())
            .select_from(Task)
            .where(Task.status == "LEASED", Task.attempts == 1)
        )
    assert leased == count


@POSTGRES_ONLY
async def test_claim_skips_a_task_locked_by_an_open_claim(store, second_store):
    """While one claim's transaction is open, another store gets the next task at once."""
    job = await add_job(store)
    first, second = (
        make_task(job, job_pb2.PRIORITY_STANDARD, BASE_TIME + timedelta(seconds=i))
        for i in range(2)
    )
    async with store.transaction() as tx:
        await tx.tasks.insert_tasks([first, second])

    async with store.transaction() as tx:
        held = await tx.tasks.claim_task("a", 60)
        assert held.id == first.id
        # Without SKIP LOCKED this would wait for the open transaction forever.
        other = await asyncio.wait_for(_claim(second_store, "b"), TIMEOUT)
        assert other is not None
        assert other.id == second.id
    assert await _claim(store, "c") is None


# -- idempotency and keys -------------------------------------------------------------


async def test_idempotency_key_unique_per_organization(store):
    first = await add_job(store, make_job(ORG, idempotency_key="key-1"))
    # The unique violation arrives named, so Create can answer with the first job.
    with pytest.raises(IdempotencyKeyTaken):
        await add_job(store, make_job(ORG, idempotency_key="key-1"))
    other = await add_job(store, make_job(OTHER_ORG, idempotency_key="key-1"))
    # Jobs without a key never collide.
    await add_job(store, make_job(ORG))
    await add_job(store, make_job(ORG))

    async with store.transaction() as tx:
        assert (await tx.jobs.job_by_idempotency_key(ORG, "key-1")).job.id == first.id
        assert (await tx.jobs.job_by_idempotency_key(OTHER_ORG, "key-1")).job.id == other.id
        assert await tx.jobs.job_by_idempotency_key(ORG, "key-2") is None
        jobs = await tx.session.scalar(select(func.count()).select_from(Job))
    assert jobs == 4


async def test_api_key_round_trip(store):
    async with store.transaction() as tx:
        await tx.keys.ensure_organization(ORG)
        await tx.keys.ensure_organization(OTHER_ORG)
        key = await tx.keys.create_api_key(ORG, "ci")
        other_key = await tx.keys.create_api_key(OTHER_ORG)
    assert key.startswith(API_KEY_PREFIX)
    assert key != other_key

    async with store.transaction() as tx:
        assert await tx.keys.organization_for_key(key) == ORG
        assert await tx.keys.organization_for_key(other_key) == OTHER_ORG
        assert await tx.keys.organization_for_key(API_KEY_PREFIX + "unknown") is None
        assert await tx.keys.organization_for_key(key[:-1]) is None
        assert await tx.keys.organization_for_key("") is None
        stored = (await tx.session.scalars(select(ApiKey.key_hash))).all()
    # Only hashes are stored.
    assert hashlib.sha256(key.encode()).hexdigest() in stored
    assert key not in stored


# -- task outbox ------------------------------------------------------------------------


async def test_republishing_writes_an_outbox_row_for_each_claimable_task_only(store):
    """For a broker that lost its messages (server/dispatch/pubsub.py): every task a worker
    could claim gets a row again, with its priority and trace; others get none."""
    job = await add_job(store)
    queued = make_task(job, 3, BASE_TIME)
    queued.traceparent = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"
    untraced = make_task(job, 1, BASE_TIME)
    leased = make_task(job, 2, BASE_TIME, status="LEASED")
    done = make_task(job, 2, BASE_TIME, status="DONE")
    async with store.transaction() as tx:
        tx.session.add_all([queued, untraced, leased, done])
    async with store.transaction() as tx:
        assert await tx.task_outbox.republish_claimable() == 2
    async with store.transaction() as tx:
        entries = await tx.task_outbox.peek_outbox(10)
    assert sorted((e.task_id, e.job_id, e.priority, e.traceparent) for e in entries) == sorted(
        [
            (queued.id, job.id, 3, queued.traceparent),
            (untraced.id, job.id, 1, ""),
        ]
    )
