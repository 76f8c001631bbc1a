"""How often recording a result reads the job: once to validate files, once under the lock.

complete_task used to reload the job and its outputs after every guarded UPDATE (about
five times per transcode result); it now keeps the record it locked current instead. A
result without files (a probe's facts, an error) is validated under the lock: one read.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from kiln.v1 import job_pb2, job_service_pb2
from sqlalchemy import event

from server.store.store import Store
from tests.support import ORG
from tests.support.wiring import Services

# SELECTs that read the jobs table (a job load, or a status read before a transition).
JOBS_SELECT = re.compile(r"^\s*SELECT\b.*\bFROM jobs\b", re.IGNORECASE | re.DOTALL)
# The lock a locked load takes first, in a statement of its own (PostgreSQL; the load after it
# then sees what a transaction it waited for committed: server.store.jobs.get_job). It reads
# nothing of the job, so it is not counted as a load.
LOCK_ONLY = re.compile(r"^\s*SELECT jobs\.id\s+FROM jobs\b.*\bFOR UPDATE\s*$", re.DOTALL)
# The validation read outside the transaction, and the locked read inside it.
MAX_JOB_READS = 2
# A probe result is validated under the lock: the locked read only.
PROBE_RESULT_JOB_READS = 1


@contextmanager
def job_reads(store: Store) -> Iterator[list[str]]:
    """The SELECT statements on the jobs table issued while the block runs."""
    statements: list[str] = []

    def seen(_conn, _cursor, statement: str, *_rest) -> None:
        if JOBS_SELECT.match(statement) and not LOCK_ONLY.match(statement):
            statements.append(statement)

    event.listen(store.engine.sync_engine, "before_cursor_execute", seen)
    try:
        yield statements
    finally:
        event.remove(store.engine.sync_engine, "before_cursor_execute", seen)


async def test_a_transcode_result_reads_the_job_twice(store, tmp_path):
    services = Services(store, tmp_path, lease_seconds=30)
    job, task = await services.probed_transcode()
    with job_reads(store) as reads:
        await services.tasks.complete_task(services.finished(task))
    assert len(reads) <= MAX_JOB_READS, "\n\n".join(reads)
    finished = await services.jobs.get(ORG, job.id)
    assert finished.status == job_pb2.JOB_STATUS_COMPLETED
    assert finished.progress == 100.0
    assert finished.outputs[0].status == job_pb2.OUTPUT_STATUS_COMPLETED
    assert finished.actual_cost == finished.outputs[0].actual_cost
    assert finished.actual_cost.micros > 0
    # The terminal event was built from the held record: it must match a fresh read.
    completed = (await last_event(store, job.id)).completed.job
    assert completed.status == finished.status
    assert completed.progress == finished.progress
    assert completed.actual_cost == finished.actual_cost
    assert completed.complete_time == finished.complete_time
    assert completed.outputs[0].status == finished.outputs[0].status


async def test_a_probe_result_reads_the_job_once(store, tmp_path):
    services = Services(store, tmp_path, lease_seconds=30)
    job = await services.create()
    probe = await services.claim()
    request = services.probed(probe)
    with job_reads(store) as reads:
        await services.tasks.complete_task(request)
    assert len(reads) == PROBE_RESULT_JOB_READS, "\n\n".join(reads)
    probed = await services.jobs.get(ORG, job.id)
    assert probed.status == job_pb2.JOB_STATUS_PROCESSING
    assert probed.estimated_cost == probed.outputs[0].estimated_cost
    assert probed.estimated_cost.micros > 0


async def last_event(store: Store, job_id: str) -> job_service_pb2.WatchResponse:
    async with store.transaction() as tx:
        events = await tx.events.events_after(job_id, 0)
    return job_service_pb2.WatchResponse.FromString(events[-1][1])
