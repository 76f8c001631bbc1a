"""Google's Pub/Sub emulator killed and started again mid-run (issue: faults that cross a
network). A restarted emulator keeps nothing: not the topics, not the subscriptions, not the
messages of tasks still waiting. Nothing may be lost: the running task finishes on its lease,
a task queued before the crash and one made ready during the outage both run after it."""

from __future__ import annotations

import pytest
from kiln.v1 import job_pb2

from tests.conftest import create_postgres_database, drop_postgres_database, make_clip
from tests.support.pubsub_emulator import running_emulator

from .cluster import LOOPBACK_INPUTS
from .fleets import auth_for, fleet, task_rows, wait_for_progress
from .jobs import create_job, mp4_output, run_to_end


@pytest.fixture
def backend_url(postgres_available):
    url = create_postgres_database()
    try:
        yield url
    finally:
        drop_postgres_database(url)


@pytest.fixture
def emulator(tmp_path):
    """An emulator of this test's own: killing it must not touch any other test's."""
    with running_emulator(tmp_path / "emulator") as emulator:
        yield emulator


@pytest.mark.slow
def test_a_restarted_emulator_loses_no_task(
    backend_url, emulator, tmp_path, media_root, held_input
):
    short_clip = make_clip(media_root / "broker_1s.mp4", seconds=1)
    settings = {"KILN_LEASE_SECONDS": "5", **LOOPBACK_INPUTS}
    with fleet(backend_url, tmp_path, media_root, "pubsub", emulator, **settings) as (
        cluster,
        server,
        _,
    ):
        auth = auth_for(cluster, "org_broker")
        cluster.start_worker(server, concurrency=1)
        # Held mid-encode until the emulator is back.
        running = create_job(server, auth, held_input.url, outputs=[mp4_output("360p")])
        wait_for_progress(server.job_stub(), auth, running.id, above=1)
        # The one slot is busy: this probe's message waits in the emulator (or in the
        # worker's hands, held for a free slot) when the emulator dies with it.
        queued_before = create_job(server, auth, f"file://{short_clip}")

        emulator.kill()
        # Made ready while the broker is down: its message waits in the outbox.
        made_during = create_job(server, auth, f"file://{short_clip}")
        emulator.start_again()
        held_input.release()

        finals = {
            job.id: run_to_end(server, auth, job.id, timeout=90)
            for job in (running, queued_before, made_during)
        }
        for final in finals.values():
            assert final.status == job_pb2.JOB_STATUS_COMPLETED, final.error
        # The running task kept its lease (leases live in the database, not the broker).
        encode = [t for t in task_rows(backend_url, running.id) if t["kind"] == "TRANSCODE"]
        assert [t["attempts"] for t in encode] == [1]
        for job in (queued_before, made_during):
            assert all(t["attempts"] == 1 for t in task_rows(backend_url, job.id))
        assert "published again" in server.log.read_text()
