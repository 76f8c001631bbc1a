"""The server's and the worker's Prometheus metrics: the text parses with the official parser,
and each counter moves where its event happens (against both real databases)."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from kiln.v1 import job_pb2
from kiln.worker.v1 import worker_service_pb2 as wpb
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from server.jobs.fleet import Fleet
from server.metrics import WORKER_FORGOTTEN_AFTER, ServerMetrics
from server.store.database import now
from tests.e2e.cluster import free_port
from tests.support.clock import ManualClock
from tests.support.webhooks import queue_delivery, sender
from tests.support.wiring import Services
from worker.metrics import WorkerMetrics

# Where the database makes no difference, one is enough.
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def samples(text: bytes | str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} of one exposition text."""
    raw = text.decode() if isinstance(text, bytes) else text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(raw)
        for sample in family.samples
    }


def value(parsed, name: str, **labels: str) -> float:
    return parsed.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_job_task_and_lease_metrics_move(store, tmp_path):
    services = Services(store, tmp_path, lease_seconds=60)
    metrics = services.life.metrics
    expiring = Services(store, tmp_path, lease_seconds=-1, attempts=1)
    expiring.life.metrics = metrics

    before = samples(await metrics.render(store))
    assert value(before, "kiln_queue_depth", priority="standard") == 0
    assert {"premium", "standard", "economy"} <= {
        dict(labels)["priority"] for name, labels in before if name == "kiln_queue_depth"
    }
    assert value(before, "kiln_jobs_finished_total", status="COMPLETED") == 0

    # Probe claimed, probed, transcode claimed and finished: one COMPLETED job.
    _job, task = await services.probed_transcode()
    await services.tasks.complete_task(services.finished(task))
    done = samples(await metrics.render(store))
    assert value(done, "kiln_queue_depth", priority="standard") == 0
    assert value(done, "kiln_jobs_finished_total", status="COMPLETED") == 1
    assert value(done, "kiln_task_wait_seconds_count", kind="PROBE") == 1
    assert value(done, "kiln_task_wait_seconds_count", kind="TRANSCODE") == 1
    assert 0 <= value(done, "kiln_task_wait_seconds_sum", kind="PROBE") < 30
    # A result repeated after the job ended changes nothing, counters included.
    await services.tasks.complete_task(services.finished(task))
    again = samples(await metrics.render(store))
    assert value(again, "kiln_jobs_finished_total", status="COMPLETED") == 1

    # A lease that expires on its last attempt: the output fails, so does the job.
    _job, lost = await services.probed_transcode()
    await expiring.tasks.report_progress(
        wpb.ReportProgressRequest(task_id=lost.id, lease_token=lost.lease_token, progress=5)
    )
    assert await expiring.tasks.lost.reap_expired_leases() >= 1
    reaped = samples(await metrics.render(store))
    assert value(reaped, "kiln_lease_expiries_total", outcome="failed") >= 1
    assert value(reaped, "kiln_jobs_finished_total", status="FAILED") == 1
    assert value(reaped, "kiln_jobs_finished_total", status="COMPLETED") == 1


async def test_requeued_lease_is_counted(store, tmp_path):
    # Every lease expires a second before it is granted: the reaper may take it at once.
    expiring = Services(store, tmp_path, lease_seconds=-1, attempts=3)
    metrics = expiring.life.metrics
    await expiring.create()
    queued = samples(await metrics.render(store))
    assert value(queued, "kiln_queue_depth", priority="standard") == 1
    await expiring.claim()
    leased = samples(await metrics.render(store))
    assert value(leased, "kiln_queue_depth", priority="standard") == 0
    assert await expiring.tasks.lost.reap_expired_leases() == 1
    parsed = samples(await metrics.render(store))
    assert value(parsed, "kiln_lease_expiries_total", outcome="requeued") == 1
    assert value(parsed, "kiln_queue_depth", priority="standard") == 1
    await expiring.claim()
    parsed = samples(await metrics.render(store))
    assert value(parsed, "kiln_task_wait_seconds_count", kind="PROBE") == 2


async def test_oldest_queued_task_wait_is_the_autoscaling_signal(store, tmp_path):
    services = Services(store, tmp_path, lease_seconds=60)
    clock = ManualClock(now())
    services.life.metrics = metrics = ServerMetrics(clock=clock)
    idle = samples(await metrics.render(store))
    assert value(idle, "kiln_queue_oldest_seconds", priority="standard") == 0
    await services.create()
    await services.create()
    clock.set(now() + timedelta(seconds=42))
    waiting = samples(await metrics.render(store))
    # The older of the two has waited 42 s (and the moments create took) when scraped.
    assert 42 <= value(waiting, "kiln_queue_oldest_seconds", priority="standard") < 45
    assert value(waiting, "kiln_queue_oldest_seconds", priority="premium") == 0
    await services.claim()
    await services.claim()
    drained = samples(await metrics.render(store))
    assert value(drained, "kiln_queue_oldest_seconds", priority="standard") == 0


def announcement(
    worker_id: str, host: str, version: str, capacity: int, draining: bool = False
) -> wpb.AnnounceWorkerRequest:
    return wpb.AnnounceWorkerRequest(
        worker_id=worker_id,
        host=host,
        version=version,
        capacity=capacity,
        task_kinds=[wpb.TASK_KIND_TRANSCODE, wpb.TASK_KIND_PROBE],
        encoders=["libx264"],
        state=wpb.WORKER_STATE_DRAINING if draining else wpb.WORKER_STATE_ACTIVE,
    )


def worker_info(parsed, worker_id: str) -> dict[str, str]:
    """The labels of `worker_id`'s kiln_worker_info series (empty when it has none)."""
    for (name, labels), number in parsed.items():
        if name == "kiln_worker_info" and dict(labels)["worker_id"] == worker_id:
            assert number == 1
            return dict(labels)
    return {}


async def test_fleet_series_judge_each_worker_and_escape_what_it_said(store, tmp_path):
    services = Services(store, tmp_path, lease_seconds=60)
    clock = ManualClock(now())
    metrics = ServerMetrics(clock=clock, lease_seconds=30)
    assert not [name for name, _ in samples(await metrics.render(store)) if "worker" in name]
    # A host and version that would forge a series and a comment if written unescaped.
    host = 'evil"} kiln_queue_depth{priority="premium"} 99\n# TYPE forged counter\\'
    version = '1.0"\n\\n\\'
    await Fleet(store).announce(announcement("busy", host, version, capacity=4))
    await Fleet(store).announce(announcement("leaving", "render-2", "0.1.0", 1, draining=True))
    await services.create()
    assert await services.tasks.claim("busy/2", wait_seconds=0) is not None

    text = await metrics.render(store)
    # Each newline the worker sent stays inside its label value, escaped.
    assert b"\n# TYPE forged" not in text
    assert all(line.startswith((b"# ", b"kiln_")) for line in text.splitlines())
    heard = samples(text)
    assert worker_info(heard, "busy") == {
        "worker_id": "busy",
        "host": host,
        "version": version,
        "state": "ACTIVE",
        "task_kinds": "PROBE,TRANSCODE",
    }
    assert worker_info(heard, "leaving").get("state") == "DRAINING"
    assert value(heard, "kiln_worker_capacity", worker_id="busy") == 4
    assert value(heard, "kiln_worker_running_tasks", worker_id="busy") == 1
    assert value(heard, "kiln_worker_running_tasks", worker_id="leaving") == 0
    assert value(heard, "kiln_worker_last_contact_seconds", worker_id="busy") < 5
    assert value(heard, "kiln_queue_depth", priority="premium") == 0  # nothing forged
    assert not [name for name, _ in heard if "forged" in name]

    # Silent for more than a lease: LOST, with how long it has been silent.
    clock.set(now() + timedelta(seconds=31))
    silent = samples(await metrics.render(store))
    assert worker_info(silent, "busy").get("state") == "LOST"
    assert worker_info(silent, "leaving").get("state") == "LOST"
    assert 31 <= value(silent, "kiln_worker_last_contact_seconds", worker_id="busy") < 36

    # Silent past the retention: gone from /metrics, still in the database.
    clock.set(now() + WORKER_FORGOTTEN_AFTER + timedelta(seconds=1))
    forgotten = samples(await metrics.render(store))
    assert not [name for name, _ in forgotten if name.startswith("kiln_worker_")]
    async with store.transaction() as tx:
        assert {record.id for record in await tx.workers.list_workers()} == {"busy", "leaving"}


@SQLITE_ONLY
async def test_wait_of_a_task_given_back_counts_from_its_return(store, tmp_path):
    services = Services(store, tmp_path, lease_seconds=60)
    # The store stamps when a task became ready by the wall clock; the wait is measured to
    # this one, so the test says when each claim happens instead of sleeping until then.
    clock = ManualClock(now())
    services.life.metrics = metrics = ServerMetrics(clock=clock)
    await services.create()
    clock.set(now() + timedelta(seconds=1.5))  # the task was made before create returned
    probe = await services.claim()  # waited 1.5 s (and a little) since it was made
    await services.tasks.release(
        wpb.ReleaseTaskRequest(task_id=probe.id, lease_token=probe.lease_token, reason="drain")
    )
    clock.set(now())  # the task was given back before release returned
    await services.claim()  # waited next to nothing since it was given back
    parsed = samples(await metrics.render(store))
    assert value(parsed, "kiln_task_wait_seconds_count", kind="PROBE") == 2
    assert value(parsed, "kiln_task_wait_seconds_bucket", kind="PROBE", le="0.5") == 1
    assert 1.5 <= value(parsed, "kiln_task_wait_seconds_sum", kind="PROBE") < 2.0


@SQLITE_ONLY
async def test_webhook_outcomes_are_counted(store, failing_receiver):
    metrics = ServerMetrics()
    job_id = await queue_delivery(store, failing_receiver)
    webhooks = sender(store, ["127.0.0.1"], max_attempts=1)
    webhooks.metrics = metrics
    assert await webhooks.send_due() == 1
    parsed = samples(await metrics.render(store))
    assert value(parsed, "kiln_webhook_deliveries_total", outcome="failed") == 1
    assert value(parsed, "kiln_webhook_deliveries_total", outcome="delivered") == 0
    assert job_id


@SQLITE_ONLY
async def test_watch_streams_and_included_registries(store):
    metrics = ServerMetrics()
    streams = [object(), object()]
    metrics.count_watch_streams(lambda: len(streams))
    worker = WorkerMetrics()
    metrics.include(worker.registry)
    worker.task_started("transcode")
    parsed = samples(await metrics.render(store))
    assert value(parsed, "kiln_watch_streams") == 2
    assert value(parsed, "kiln_worker_tasks_in_progress", kind="transcode") == 1


async def test_worker_metrics_endpoint_serves_its_own_registry():
    worker = WorkerMetrics()
    port = free_port()
    worker.serve("127.0.0.1", port)
    try:
        worker.task_started("transcode")
        worker.encoded(media_seconds=10.0, wall_seconds=2.0)
        worker.task_ended("transcode", "completed")
        async with httpx.AsyncClient() as client:
            response = await client.get(f"http://127.0.0.1:{port}/metrics")
        assert response.status_code == 200
        parsed = samples(response.text)
    finally:
        worker.stop()
    assert value(parsed, "kiln_worker_tasks_total", kind="transcode", outcome="completed") == 1
    assert value(parsed, "kiln_worker_tasks_in_progress", kind="transcode") == 0
    assert value(parsed, "kiln_encode_realtime_factor_count") == 1
    assert value(parsed, "kiln_encode_realtime_factor_sum") == 5.0
    # Nothing from the process-wide default registry leaks in.
    assert not any(name.startswith("python_") for name, _labels in parsed)
    assert b"kiln_encode_realtime_factor" in generate_latest(worker.registry)


def test_priority_labels():
    from server.metrics import priority_label

    assert priority_label(job_pb2.PRIORITY_PREMIUM) == "premium"
    assert priority_label(job_pb2.PRIORITY_ECONOMY) == "economy"
    assert priority_label(99) == "99"
