"""The worker-facing use cases against real databases: lease reaping and racing writers.

No server process here: the use cases (JobService, TaskService) run on a real Store, so the
races are driven deterministically, step by step, instead of by timing.
"""

from __future__ import annotations

import asyncio

import pytest
from kiln.v1 import job_pb2
from kiln.worker.v1 import worker_service_pb2 as wpb

from server.domain.errors import FailedPrecondition
from server.domain.states import OutputStatus, TaskStatus
from server.store.store import Store
from tests.support import ORG
from tests.support.wiring import Services

POSTGRES_ONLY = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
CANCEL_RACE_ROUNDS = 30


async def task_row(store: Store, task_id: str):
    async with store.transaction() as tx:
        return await tx.tasks.task(task_id)


async def test_reaper_never_takes_a_lease_renewed_after_it_looked(store, tmp_path):
    # Leases granted by this instance are expired the moment they are granted.
    expiring = Services(store, tmp_path, lease_seconds=-1)
    renewing = Services(store, tmp_path, lease_seconds=60)
    await expiring.create()
    probe = await expiring.claim()
    async with store.transaction() as tx:
        [candidate] = await tx.tasks.expired_leases()

    # The worker's heartbeat lands between the reaper's read and its update.
    stop = await renewing.tasks.report_progress(
        wpb.ReportProgressRequest(task_id=probe.id, lease_token=probe.lease_token)
    )
    assert stop is False
    assert await expiring.tasks.lost.reap(candidate) is False
    assert (await task_row(store, probe.id)).status == TaskStatus.LEASED
    assert await expiring.tasks.lost.reap_expired_leases() == 0

    # Silent from now on: the next heartbeat-free lease is taken back and requeued.
    await expiring.tasks.report_progress(
        wpb.ReportProgressRequest(task_id=probe.id, lease_token=probe.lease_token)
    )
    assert await expiring.tasks.lost.reap_expired_leases() == 1
    row = await task_row(store, probe.id)
    assert (row.status, row.attempts) == (TaskStatus.QUEUED, 1)
    again = await expiring.claim()
    assert again.id == probe.id and again.lease_token != probe.lease_token


async def test_exhausted_attempts_fail_the_output_with_worker_lost(store, tmp_path):
    services = Services(store, tmp_path, lease_seconds=60, attempts=1)
    expiring = Services(store, tmp_path, lease_seconds=-1, attempts=1)
    job, task = await services.probed_transcode()
    await expiring.tasks.report_progress(
        wpb.ReportProgressRequest(task_id=task.id, lease_token=task.lease_token, progress=5)
    )
    assert await expiring.tasks.lost.reap_expired_leases() == 1
    done = await services.jobs.get(ORG, job.id)
    assert done.status == job_pb2.JOB_STATUS_FAILED
    assert done.outputs[0].error.code == "WORKER_LOST"
    # A result arriving after the task was given up is dropped, not recorded.
    await services.tasks.complete_task(services.finished(task))
    assert (await services.jobs.get(ORG, job.id)).status == job_pb2.JOB_STATUS_FAILED


@POSTGRES_ONLY
async def test_cancel_racing_complete_task_ends_in_one_consistent_state(store, tmp_path):
    services = Services(store, tmp_path, lease_seconds=60)
    outcomes = {"completed": 0, "canceled": 0}

    async def cancel_after(job_id: str, delay: float) -> job_pb2.Job:
        # Not synchronisation: a sweep of head starts so the two transactions overlap at
        # every point of CompleteTask (its checks, its locked write), not only at the start.
        await asyncio.sleep(delay)
        return await services.jobs.cancel(ORG, job_id)

    for round_number in range(CANCEL_RACE_ROUNDS):
        job, task = await services.probed_transcode()
        cancel, complete = await asyncio.gather(
            cancel_after(job.id, round_number * 0.001),
            services.tasks.complete_task(services.finished(task)),
            return_exceptions=True,
        )
        # The only error either side may see is the domain's answer to losing the race.
        assert complete is None, complete
        if isinstance(cancel, BaseException):
            assert isinstance(cancel, FailedPrecondition), cancel
        final = await services.jobs.get(ORG, job.id)
        row = await task_row(store, task.id)
        if final.status == job_pb2.JOB_STATUS_COMPLETED:
            assert isinstance(cancel, FailedPrecondition)
            assert final.outputs[0].status == job_pb2.OUTPUT_STATUS_COMPLETED
            assert row.status == TaskStatus.DONE
            outcomes["completed"] += 1
        else:
            assert final.status == job_pb2.JOB_STATUS_CANCELED
            assert final.outputs[0].status == job_pb2.OUTPUT_STATUS_CANCELED
            assert row.status == TaskStatus.CANCELED
            outcomes["canceled"] += 1
    print("cancel race outcomes", outcomes)
    assert sum(outcomes.values()) == CANCEL_RACE_ROUNDS


async def test_guarded_statuses_refuse_moves_the_tables_do_not_allow(store, tmp_path):
    services = Services(store, tmp_path, lease_seconds=60)
    job, _task = await services.probed_transcode()
    output_id = job.outputs[0].id
    async with store.transaction() as tx:
        # PROCESSING -> PENDING
        assert not await tx.outputs.move_output(output_id, OutputStatus.PENDING)
        assert await tx.outputs.move_output(output_id, OutputStatus.CANCELED)
        # CANCELED is final
        assert not await tx.outputs.move_output(output_id, OutputStatus.COMPLETED)
    record = await services.jobs.get(ORG, job.id)
    assert record.status == job_pb2.JOB_STATUS_PROCESSING
