"""A fleet: server and workers as separate processes, dispatched by Pub/Sub (Google's
emulator, one per module) or the database queue, through kills, redeliveries and drains.

What Pub/Sub carried is read through its real APIs: an audit subscription on each of the
fleet's topics, made before the server starts, sees every published message; the workers'
Pub/Sub clients log what they received (with its delivery attempt: kiln's subscriptions
have a dead-letter policy) and what they acked or handed back (tests/support/pubsub_audit.py)."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import grpc
import m3u8
import pytest
from google.pubsub_v1 import types
from kiln.v1 import job_pb2, job_service_pb2

from server.dispatch.pubsub import DELIVERY_COUNT_ATTRIBUTE
from tests.conftest import create_postgres_database, drop_postgres_database, make_clip
from tests.support.processes import ffmpeg_pids_writing_to, wait_until

from .cluster import LOOPBACK_INPUTS, Cluster
from .fleets import (
    all_acked,
    auth_for,
    fleet,
    pubsub_settings,
    task_rows,
    wait_for_progress,
    worker_calls,
    worker_states,
)
from .jobs import QC_JSON, create_job, mp4_output, run_to_end

BACKENDS = ["db", "pubsub"]


@pytest.fixture(scope="module")
def backend_url(postgres_available):
    """A fleet is many processes on one PostgreSQL (SQLite is the one-process default)."""
    url = create_postgres_database()
    try:
        yield url
    finally:
        drop_postgres_database(url)


@pytest.fixture(scope="module")
def long_clip(media_root):
    """12 s of 480p: an encode still running when the cancel test stops it. Tests that
    interrupt an encode and then let it finish read a `held_input` instead."""
    return make_clip(media_root / "fleet12s_480p.mp4", seconds=12, size="854x480")


@pytest.fixture
def start_fleet(request, backend_url, tmp_path, media_root):
    """fleet(dispatch, **settings) on this test's folder and the module's database; a pubsub
    fleet on the module's emulator (started when a test first asks for it). Its inputs may
    be `held_input`s."""

    def start(dispatch: str, **settings: str):
        emulator = request.getfixturevalue("pubsub_emulator") if dispatch == "pubsub" else None
        settings = {**LOOPBACK_INPUTS, **settings}
        return fleet(backend_url, tmp_path, media_root, dispatch, emulator, **settings)

    return start


def hls_output() -> job_pb2.OutputSpec:
    return job_pb2.OutputSpec(
        type=job_pb2.OUTPUT_TYPE_HLS,
        video=[
            job_pb2.VideoVariant(codec=job_pb2.VIDEO_CODEC_H264, resolution="360p"),
            job_pb2.VideoVariant(codec=job_pb2.VIDEO_CODEC_H264, resolution="240p"),
        ],
    )


def assert_one_set_of_files(storage_dir: Path, job: job_pb2.Job) -> None:
    """Every playlist's references exist, and nothing else is stored for the output but its
    quality-control report (qc.json, which no playlist names)."""
    output = job.outputs[0]
    folder = storage_dir / job.id / output.id
    on_disk = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}
    assert on_disk == {file.path for file in output.files}
    referenced = set()
    for playlist in folder.rglob("*.m3u8"):
        parsed = m3u8.load(str(playlist))
        base = playlist.parent.relative_to(folder)
        referenced.add(str(playlist.relative_to(folder)))
        for segment in parsed.segments:
            referenced.add(str(base / segment.uri))
        for item in parsed.playlists:
            referenced.add(str(base / item.uri))
        for media in parsed.media:
            if media.uri:
                referenced.add(str(base / media.uri))
        if parsed.segment_map:
            referenced.update(str(base / m.uri) for m in parsed.segment_map)
    assert referenced | {QC_JSON} == on_disk


def test_a_job_runs_through_pubsub_with_server_and_worker_apart(start_fleet, media_root):
    # The server's default lease (10 s), not the fleets' 3 s: nothing here is killed, and on
    # a starved machine a worker's heartbeat came more than 3 s late, so the probe's lease
    # was taken back and the probe run twice; the job then outran the Watch's 60 s (seen
    # reproducing this test's CI failure under CPU starvation).
    with start_fleet("pubsub", KILN_LEASE_SECONDS="10") as (cluster, server, audit):
        auth = auth_for(cluster, "org_fleet")
        cluster.start_worker(server, concurrency=2)
        # The job's 60 s are for the job: a worker process that took most of them to start
        # (its imports on a starved machine) failed the Watch with the job still at 0 %.
        wait_until(lambda: worker_states(cluster.database_url) == ["ACTIVE"], timeout=120)
        job = create_job(
            server,
            auth,
            f"file://{media_root / 'fleet.mp4'}",
            outputs=[mp4_output(), hls_output()],
        )
        final = run_to_end(server, auth, job.id)
        assert final.status == job_pb2.JOB_STATUS_COMPLETED, final.error
        settings = pubsub_settings(cluster)
        standard = settings.subscription(job_pb2.PRIORITY_STANDARD)
        published = audit.messages(settings.topic(job_pb2.PRIORITY_STANDARD))
        # One message per task (a probe, then one transcode per output), each taken once.
        assert len(published) == 3
        calls = worker_calls(cluster)
        assert all(calls.attempts(m.message_id) == [1] for m in published)
        # The worker acks after its report: the last ack may trail the completed event.
        wait_until(lambda: all_acked(cluster), timeout=10)
        assert audit.backlog(standard) == 0
        assert {m.attributes["priority"] for m in published} == {"standard"}
        assert_one_set_of_files(cluster.storage_dir, final_with_hls_first(final))


def final_with_hls_first(job: job_pb2.Job) -> job_pb2.Job:
    ordered = job_pb2.Job()
    ordered.CopyFrom(job)
    del ordered.outputs[:]
    ordered.outputs.extend(
        sorted(job.outputs, key=lambda o: o.spec.type != job_pb2.OUTPUT_TYPE_HLS)
    )
    return ordered


@pytest.fixture(scope="module", autouse=True)
def fleet_clip(media_root):
    return make_clip(media_root / "fleet.mp4", seconds=2)


@pytest.mark.slow
@pytest.mark.parametrize("dispatch", BACKENDS)
def test_killed_worker_loses_nothing_and_duplicates_nothing(dispatch, held_input, start_fleet):
    with start_fleet(dispatch) as (cluster, server, _):
        auth = auth_for(cluster, "org_kill")
        doomed = cluster.start_worker(server)
        job = create_job(server, auth, held_input.url, outputs=[hls_output()])
        stub = server.job_stub()
        wait_for_progress(stub, auth, job.id)
        doomed.send_signal(signal.SIGKILL)
        doomed.wait()
        cluster.start_worker(server)
        held_input.release()
        final = run_to_end(server, auth, job.id, timeout=180)
        assert final.status == job_pb2.JOB_STATUS_COMPLETED, final.error
        transcode = [t for t in task_rows(cluster.database_url, job.id) if t["kind"] == "TRANSCODE"]
        assert [t["attempts"] for t in transcode] == [2]
        assert_one_set_of_files(cluster.storage_dir, final)


@pytest.mark.slow
def test_redelivered_message_does_not_start_a_second_encode(held_input, start_fleet):
    # A 1 s ack deadline: the encode, held until the duplicate is settled, outlives it
    # many times over.
    with start_fleet("pubsub", KILN_PUBSUB_ACK_DEADLINE_SECONDS="1") as (cluster, server, audit):
        auth = auth_for(cluster, "org_redeliver")
        cluster.start_worker(server)
        cluster.start_worker(server)
        job = create_job(server, auth, held_input.url, outputs=[mp4_output("360p")])
        settings = pubsub_settings(cluster)
        topic = settings.topic(job_pb2.PRIORITY_STANDARD)
        stub = server.job_stub()
        wait_for_progress(stub, auth, job.id)
        # The same task again, as Pub/Sub may deliver it: the other (idle) worker gets it.
        [task] = [t for t in task_rows(cluster.database_url, job.id) if t["kind"] == "TRANSCODE"]
        [transcode_message] = [
            m for m in audit.messages(topic) if json.loads(m.data)["task_id"] == task["id"]
        ]
        duplicate_id = audit.publisher.publish(
            topic=topic,
            messages=[
                types.PubsubMessage(
                    data=transcode_message.data, attributes=dict(transcode_message.attributes)
                )
            ],
        ).message_ids[0]

        def duplicate_acked() -> bool:
            calls = worker_calls(cluster)
            return duplicate_id in calls.acked_message_ids() and calls.pending_acks == 0

        wait_until(duplicate_acked, timeout=20)
        held_input.release()
        final = run_to_end(server, auth, job.id, timeout=180)
        assert final.status == job_pb2.JOB_STATUS_COMPLETED, final.error
        transcode = [t for t in task_rows(cluster.database_url, job.id) if t["kind"] == "TRANSCODE"]
        assert [t["attempts"] for t in transcode] == [1]
        # Extended while it ran: the original message was never delivered a second time.
        assert worker_calls(cluster).attempts(transcode_message.message_id) == [1]


def test_a_message_no_worker_can_take_is_dead_lettered_and_fails_the_job(start_fleet, media_root):
    # Five deliveries: the fewest Pub/Sub allows in a dead-letter policy. A 5 s ack deadline:
    # the emulator may hand the retried probe to a waiting Pull the stopped worker left open,
    # where it waits out the deadline (20 s by default) before the fixed worker gets it.
    with start_fleet(
        "pubsub",
        KILN_PUBSUB_MAX_DELIVERIES="5",
        KILN_PUBSUB_ACK_DEADLINE_SECONDS="5",
        KILN_WORKER_TOKEN="the-right-token",
    ) as (cluster, server, audit):
        auth = auth_for(cluster, "org_dead")
        # A misconfigured worker: every claim is refused, every message handed back.
        misconfigured = cluster.start_worker(
            server, extra_env={"KILN_WORKER_TOKEN": "a-wrong-token"}
        )
        job = create_job(server, auth, f"file://{media_root / 'fleet.mp4'}")
        final = run_to_end(server, auth, job.id)
        assert final.status == job_pb2.JOB_STATUS_FAILED
        assert final.error.code == "DISPATCH_DEAD_LETTERED"
        assert final.error.retryable
        assert "dead-letter" in final.error.message
        settings = pubsub_settings(cluster)
        [dead] = audit.messages(settings.dead_letter_topic)
        assert dead.attributes[DELIVERY_COUNT_ATTRIBUTE] == "5"
        # The worker received the probe's message five times and handed it back each time.
        [probe] = audit.messages(settings.topic(job_pb2.PRIORITY_STANDARD))
        assert dead.data == probe.data
        calls = worker_calls(cluster)
        assert calls.attempts(probe.message_id) == [1, 2, 3, 4, 5]
        assert {d.ack_id for d in calls.deliveries} <= calls.handed_back
        # Fixed and retried, it completes.
        misconfigured.send_signal(signal.SIGTERM)
        assert misconfigured.wait(timeout=20) == 0
        cluster.start_worker(server, extra_env={"KILN_WORKER_TOKEN": "the-right-token"})
        stub = server.job_stub()
        stub.Retry(job_service_pb2.RetryRequest(id=job.id), metadata=auth)
        final = run_to_end(server, auth, job.id)
        assert final.status == job_pb2.JOB_STATUS_COMPLETED, final.error


@pytest.mark.slow
@pytest.mark.parametrize("dispatch", BACKENDS)
def test_queued_premium_starts_before_standard_before_economy(
    dispatch, held_input, media_root, start_fleet
):
    # On Pub/Sub the waits a worker leaves open while the blocker runs catch the queued
    # probes; the worker holds them and must still start PREMIUM first (worker/pubsub_queue.py).
    # The blocker's input is held until all three are queued (and published).
    with start_fleet(dispatch) as (cluster, server, audit):
        auth = auth_for(cluster, "org_priority")
        cluster.start_worker(server)
        stub = server.job_stub()
        blocker = create_job(server, auth, held_input.url, outputs=[mp4_output("360p")])
        wait_until(
            lambda: (
                stub.Get(job_service_pb2.GetRequest(id=blocker.id), metadata=auth).job.status
                == job_pb2.JOB_STATUS_PROCESSING
            ),
            timeout=60,
        )
        clip = f"file://{media_root / 'fleet.mp4'}"
        queued = {
            priority: create_job(server, auth, clip, priority=priority).id
            for priority in (
                job_pb2.PRIORITY_ECONOMY,
                job_pb2.PRIORITY_STANDARD,
                job_pb2.PRIORITY_PREMIUM,
            )
        }
        if audit is not None:
            settings = pubsub_settings(cluster)
            for priority in queued:
                audit.wait_for(settings.topic(priority), 1)
        held_input.release()
        finished = {
            priority: run_to_end(server, auth, job_id, timeout=180)
            for priority, job_id in queued.items()
        }
        assert all(j.status == job_pb2.JOB_STATUS_COMPLETED for j in finished.values())
        started = {p: j.probe_time.ToDatetime() for p, j in finished.items()}
        assert (
            started[job_pb2.PRIORITY_PREMIUM]
            < started[job_pb2.PRIORITY_STANDARD]
            < started[job_pb2.PRIORITY_ECONOMY]
        )


@pytest.mark.slow
@pytest.mark.parametrize("dispatch", BACKENDS)
def test_sigterm_on_a_busy_worker_releases_its_task_at_once(dispatch, held_input, start_fleet):
    # A 60 s lease: if the job waited for it to expire, the bound below would fail.
    with start_fleet(dispatch, KILN_LEASE_SECONDS="60", KILN_WORKER_DRAIN_SECONDS="0.5") as (
        cluster,
        server,
        _,
    ):
        auth = auth_for(cluster, "org_drain")
        draining = cluster.start_worker(server)
        job = create_job(server, auth, held_input.url, outputs=[mp4_output("360p")])
        stub = server.job_stub()
        wait_for_progress(stub, auth, job.id)
        draining.send_signal(signal.SIGTERM)
        assert draining.wait(timeout=20) == 0
        cluster.start_worker(server)
        held_input.release()
        final = run_to_end(server, auth, job.id, timeout=45)
        assert final.status == job_pb2.JOB_STATUS_COMPLETED, final.error
        transcode = [t for t in task_rows(cluster.database_url, job.id) if t["kind"] == "TRANSCODE"]
        # Released, not lost: the drained attempt is given back.
        assert [t["attempts"] for t in transcode] == [1]


@pytest.mark.slow
def test_sigterm_on_a_busy_worker_with_time_to_finish_completes_the_task(held_input, start_fleet):
    with start_fleet("pubsub", KILN_WORKER_DRAIN_SECONDS="120") as (cluster, server, _):
        auth = auth_for(cluster, "org_finish")
        worker = cluster.start_worker(server)
        job = create_job(server, auth, held_input.url)
        stub = server.job_stub()
        wait_for_progress(stub, auth, job.id)
        worker.send_signal(signal.SIGTERM)
        # The rest of the input once the worker has taken the signal (it says DRAINING).
        wait_until(lambda: "DRAINING" in worker_states(cluster.database_url), timeout=20)
        held_input.release()
        # It takes no new work, finishes this task, reports it, and exits cleanly.
        assert worker.wait(timeout=120) == 0
        final = stub.Get(job_service_pb2.GetRequest(id=job.id), metadata=auth).job
        assert final.status == job_pb2.JOB_STATUS_COMPLETED, final.error


@pytest.mark.slow
@pytest.mark.parametrize(
    ("stop", "dispatch"),
    [(signal.SIGKILL, "db"), (signal.SIGKILL, "pubsub"), (signal.SIGTERM, "pubsub")],
    ids=["kill9-db", "kill9-pubsub", "sigterm-pubsub"],
)
def test_server_restarted_mid_job_and_a_resuming_watcher_misses_nothing(
    stop, dispatch, held_input, start_fleet
):
    with start_fleet(dispatch) as (cluster, server, _):
        auth = auth_for(cluster, "org_restart")
        cluster.start_worker(server)
        job = create_job(server, auth, held_input.url, outputs=[mp4_output("360p")])
        seen: list[job_service_pb2.WatchResponse] = []
        stream = server.job_stub().Watch(
            job_service_pb2.WatchRequest(id=job.id), metadata=auth, timeout=120
        )
        with pytest.raises(grpc.RpcError) as ended:
            for event in stream:
                seen.append(event)
                progressed = event.WhichOneof("event") == "progress" and event.progress.progress > 5
                if progressed and server.process.poll() is None:
                    server.process.send_signal(stop)
        assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
        if stop == signal.SIGTERM:
            # A clean shutdown says where to resume, and exits 0.
            assert "after_sequence" in ended.value.details()
            assert server.process.wait(timeout=20) == 0
        else:
            assert server.process.wait(timeout=20) == -signal.SIGKILL
        cursor = seen[-1].sequence
        restarted = cluster.restart_server(server)
        held_input.release()  # the encode finishes with the new server up
        resumed = list(
            restarted.job_stub().Watch(
                job_service_pb2.WatchRequest(id=job.id, after_sequence=cursor),
                metadata=auth,
                timeout=180,
            )
        )
        final = resumed[-1].completed.job
        assert final.status == job_pb2.JOB_STATUS_COMPLETED, final.error
        logged = [
            e.sequence
            for e in [*seen, *resumed]
            if e.WhichOneof("event") not in ("snapshot", "heartbeat")
        ]
        assert logged == sorted(set(logged)), "an event came twice or out of order"
        # Live progress may be coalesced; every other logged event reached this watcher.
        everything = list(
            restarted.job_stub().Watch(
                job_service_pb2.WatchRequest(id=job.id, after_sequence=0),
                metadata=auth,
                timeout=30,
            )
        )
        required = {e.sequence for e in everything if e.WhichOneof("event") != "progress"}
        assert required <= set(logged)
        assert logged[-1] == everything[-1].sequence


@pytest.mark.slow
def test_cancel_reaches_a_pubsub_dispatched_worker_within_a_second(long_clip, start_fleet):
    # A clip that encodes for a while rather than a held one: FFmpeg blocked in a read
    # ignores the SIGTERM a cancel sends (only the SIGKILL after it would stop it).
    with start_fleet("pubsub") as (cluster, server, audit):
        auth = auth_for(cluster, "org_cancel")
        cluster.start_worker(server)
        job = create_job(server, auth, f"file://{long_clip}", outputs=[mp4_output("720p")])
        stub = server.job_stub()
        wait_until(lambda: ffmpeg_pids_writing_to(cluster.scratch_dir), timeout=60)
        wait_for_progress(stub, auth, job.id, above=0)
        started = time.monotonic()
        stub.Cancel(job_service_pb2.CancelRequest(id=job.id), metadata=auth)
        wait_until(lambda: not ffmpeg_pids_writing_to(cluster.scratch_dir), timeout=2.0)
        # One heartbeat interval (0.25 s here) to learn of it, then SIGTERM to FFmpeg.
        assert time.monotonic() - started <= 1.5
        # The worker acks the message of the task it stopped: nothing is redelivered.
        subscription = pubsub_settings(cluster).subscription(job_pb2.PRIORITY_STANDARD)
        wait_until(lambda: all_acked(cluster), timeout=10)
        assert audit.backlog(subscription) == 0


def test_a_worker_holds_its_message_while_the_server_restarts(media_root, start_fleet):
    # Every hand-back would be another delivery (and the fifth, a dead letter): the worker's
    # own calls must show the message received once and never handed back.
    with start_fleet("pubsub") as (cluster, server, audit):
        auth = auth_for(cluster, "org_hold")
        job = create_job(server, auth, f"file://{media_root / 'fleet.mp4'}")
        settings = pubsub_settings(cluster)
        topic = settings.topic(job_pb2.PRIORITY_STANDARD)
        audit.wait_for(topic, 1)
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=20) == 0
        worker = cluster.start_worker(server)
        worker_log = cluster.root / "worker-0.log"
        wait_until(lambda: "server unreachable" in worker_log.read_text(), timeout=20)
        restarted = cluster.restart_server(server)
        final = run_to_end(restarted, auth, job.id)
        assert final.status == job_pb2.JOB_STATUS_COMPLETED, final.error
        probe_message = audit.messages(topic)[0]
        calls = worker_calls(cluster)
        [delivery] = [d for d in calls.deliveries if d.message_id == probe_message.message_id]
        assert delivery.attempt == 1
        assert delivery.ack_id not in calls.handed_back
        assert audit.messages(settings.dead_letter_topic) == []
        assert worker.poll() is None


@pytest.mark.parametrize(
    ("command", "name", "value", "message"),
    [
        ("serve", "KILN_DISPATCH", "kafka", "KILN_DISPATCH='kafka' is not a dispatch backend"),
        ("worker", "KILN_DISPATCH", "kafka", "KILN_DISPATCH='kafka' is not a dispatch backend"),
        (
            "serve",
            "KILN_HTTP_PORT",
            "eighty",
            "KILN_HTTP_PORT must be a whole number, got 'eighty'",
        ),
        ("serve", "KILN_LEASE_SECONDS", "0", "KILN_LEASE_SECONDS must be more than 0"),
        ("worker", "KILN_WORKER_CONCURRENCY", "0", "KILN_WORKER_CONCURRENCY must be at least 1"),
    ],
)
def test_a_bad_setting_is_refused_at_start(command, name, value, message, tmp_path, media_root):
    cluster = Cluster(f"sqlite:///{tmp_path / 'kiln.db'}", tmp_path, media_root)
    result = cluster.run_to_exit(command, **{name: value})
    assert result.returncode == 2
    assert f"kiln: refusing to start: {message}" in result.stderr
    assert "Traceback" not in result.stderr
