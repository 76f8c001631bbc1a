"""A fleet: server and workers as separate processes, dispatched by Pub/Sub (the in-repo
fake of google.pubsub.v1) or the database queue, through kills, redeliveries and drains."""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import m3u8
import pytest
from google.cloud import pubsub_v1
from kiln.v1 import job_pb2, job_service_pb2
from sqlalchemy import create_engine, text

from common.pubsub import PubSubSettings
from server.store.store import sync_url
from tests.conftest import create_postgres_database, drop_postgres_database, make_clip
from tests.pubsub_fake import running_fake
from tests.support.processes import ffmpeg_pids_writing_to, wait_until

from .cluster import Cluster, ServerProcess
from .jobs import create_job, mp4_output, run_to_end

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
    """12 s of 480p: an encode that is still running when a test interrupts it, but short."""
    return make_clip(media_root / "fleet12s_480p.mp4", seconds=12, size="854x480")


@contextmanager
def fleet(
    backend_url: str, root: Path, media_root: Path, dispatch: str, **settings: str
) -> Iterator[tuple[Cluster, ServerProcess, object]]:
    """A server on `dispatch`, with a Pub/Sub fake when it is `pubsub`; no worker yet."""
    with running_fake(seed=7) as fake:
        env = {"KILN_DISPATCH": dispatch, "KILN_LEASE_SECONDS": "3", **settings}
        if dispatch == "pubsub":
            env |= {
                "PUBSUB_EMULATOR_HOST": fake.host,
                "KILN_PUBSUB_PROJECT": "kiln-e2e",
                # A prefix of its own per fleet: one database per module, one fake per test.
                "KILN_PUBSUB_PREFIX": f"t{uuid.uuid4().hex[:8]}",
            }
        cluster = Cluster(backend_url, root, media_root, settings=env)
        try:
            yield cluster, cluster.start_server(), fake
        except BaseException:
            print(cluster.logs())
            raise
        finally:
            cluster.stop()


def wait_for_progress(stub, auth, job_id: str, above: float = 5, timeout: float = 60) -> None:
    """Until the job is well into encoding (its FFmpeg runs)."""
    request = job_service_pb2.GetRequest(id=job_id)
    wait_until(lambda: stub.Get(request, metadata=auth).job.progress > above, timeout=timeout)


def pubsub_settings(cluster: Cluster) -> PubSubSettings:
    return PubSubSettings.from_env(cluster.settings)


def task_rows(backend_url: str, job_id: str) -> list[dict]:
    engine = create_engine(sync_url(backend_url))
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT id, kind, status, attempts, worker_id FROM tasks "
                    "WHERE job_id = :job ORDER BY created_at"
                ),
                {"job": job_id},
            )
            return [dict(row._mapping) for row in rows]
    finally:
        engine.dispose()


def auth_for(cluster: Cluster, organization: str) -> tuple:
    return (("authorization", f"Bearer {cluster.create_key(organization)}"),)


def hls_output() -> job_pb2.OutputSpec:
    return job_pb2.OutputSpec(
        type=job_pb2.OUTPUT_TYPE_HLS,
        video=[
            job_pb2.VideoVariant(codec=job_pb2.VIDEO_CODEC_H264, resolution="360p"),
            job_pb2.VideoVariant(codec=job_pb2.VIDEO_CODEC_H264, resolution="240p"),
        ],
    )


def assert_one_set_of_files(storage_dir: Path, job: job_pb2.Job) -> None:
    """Every playlist's references exist, and nothing else is stored for the output."""
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
    assert referenced == on_disk


def test_a_job_runs_through_pubsub_with_server_and_worker_apart(backend_url, tmp_path, media_root):
    with fleet(backend_url, tmp_path, media_root, "pubsub") as (cluster, server, fake):
        auth = auth_for(cluster, "org_fleet")
        cluster.start_worker(server, concurrency=2)
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
        published = fake.published(settings.topic(job_pb2.PRIORITY_STANDARD))
        # One message per task (a probe, then one transcode per output), each taken once.
        assert len(published) == 3
        assert all(fake.delivery_count(standard, m.message_id) == 1 for m in published)
        # The worker acks after its report: the last ack may trail the completed event.
        assert fake.wait_until(lambda: fake.outstanding(standard) == 0, timeout=10)
        assert fake.backlog(standard) == 0
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
def test_killed_worker_loses_nothing_and_duplicates_nothing(
    dispatch, backend_url, tmp_path, media_root, long_clip
):
    with fleet(backend_url, tmp_path, media_root, dispatch) as (cluster, server, _fake):
        auth = auth_for(cluster, "org_kill")
        doomed = cluster.start_worker(server)
        job = create_job(server, auth, f"file://{long_clip}", outputs=[hls_output()])
        stub = server.job_stub()
        wait_for_progress(stub, auth, job.id)
        doomed.send_signal(signal.SIGKILL)
        doomed.wait()
        cluster.start_worker(server)
        final = run_to_end(server, auth, job.id, timeout=180)
        assert final.status == job_pb2.JOB_STATUS_COMPLETED, final.error
        transcode = [t for t in task_rows(cluster.database_url, job.id) if t["kind"] == "TRANSCODE"]
        assert [t["attempts"] for t in transcode] == [2]
        assert_one_set_of_files(cluster.storage_dir, final)


@pytest.mark.slow
def test_redelivered_message_does_not_start_a_second_encode(
    backend_url, tmp_path, media_root, long_clip, monkeypatch
):
    # A 1 s ack deadline: the 20 s encode outlives it many times over.
    with fleet(
        backend_url,
        tmp_path,
        media_root,
        "pubsub",
        KILN_PUBSUB_ACK_DEADLINE_SECONDS="1",
    ) as (cluster, server, fake):
        auth = auth_for(cluster, "org_redeliver")
        cluster.start_worker(server)
        cluster.start_worker(server)
        job = create_job(server, auth, f"file://{long_clip}", outputs=[mp4_output("360p")])
        settings = pubsub_settings(cluster)
        topic = settings.topic(job_pb2.PRIORITY_STANDARD)
        subscription = settings.subscription(job_pb2.PRIORITY_STANDARD)
        stub = server.job_stub()
        wait_for_progress(stub, auth, job.id)
        # The same task again, as Pub/Sub may deliver it: the other (idle) worker gets it.
        transcode_message = fake.published(topic)[-1]
        monkeypatch.setenv("PUBSUB_EMULATOR_HOST", fake.host)
        publisher = pubsub_v1.PublisherClient()
        duplicate_id = publisher.publish(
            topic, transcode_message.data, **dict(transcode_message.attributes)
        ).result(timeout=10)
        assert fake.wait_until(lambda: duplicate_id in fake.acked(subscription), timeout=20)
        final = run_to_end(server, auth, job.id, timeout=180)
        assert final.status == job_pb2.JOB_STATUS_COMPLETED, final.error
        transcode = [t for t in task_rows(cluster.database_url, job.id) if t["kind"] == "TRANSCODE"]
        assert [t["attempts"] for t in transcode] == [1]
        # Extended while it ran: the original message was never delivered a second time.
        assert fake.delivery_count(subscription, transcode_message.message_id) == 1


def test_a_message_no_worker_can_take_is_dead_lettered_and_fails_the_job(
    backend_url, tmp_path, media_root
):
    with fleet(
        backend_url,
        tmp_path,
        media_root,
        "pubsub",
        KILN_PUBSUB_MAX_DELIVERIES="2",
        KILN_WORKER_TOKEN="the-right-token",
    ) as (cluster, server, fake):
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
        assert len(fake.published(settings.dead_letter_topic)) == 1
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
    dispatch, backend_url, tmp_path, media_root, long_clip
):
    with fleet(backend_url, tmp_path, media_root, dispatch) as (cluster, server, _fake):
        auth = auth_for(cluster, "org_priority")
        cluster.start_worker(server)
        stub = server.job_stub()
        blocker = create_job(server, auth, f"file://{long_clip}", outputs=[mp4_output("360p")])
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
def test_sigterm_on_a_busy_worker_releases_its_task_at_once(
    dispatch, backend_url, tmp_path, media_root, long_clip
):
    # A 60 s lease: if the job waited for it to expire, the bound below would fail.
    with fleet(
        backend_url,
        tmp_path,
        media_root,
        dispatch,
        KILN_LEASE_SECONDS="60",
        KILN_WORKER_DRAIN_SECONDS="0.5",
    ) as (cluster, server, _fake):
        auth = auth_for(cluster, "org_drain")
        draining = cluster.start_worker(server)
        job = create_job(server, auth, f"file://{long_clip}", outputs=[mp4_output("360p")])
        stub = server.job_stub()
        wait_for_progress(stub, auth, job.id)
        draining.send_signal(signal.SIGTERM)
        assert draining.wait(timeout=20) == 0
        cluster.start_worker(server)
        final = run_to_end(server, auth, job.id, timeout=45)
        assert final.status == job_pb2.JOB_STATUS_COMPLETED, final.error
        transcode = [t for t in task_rows(cluster.database_url, job.id) if t["kind"] == "TRANSCODE"]
        # Released, not lost: the drained attempt is given back.
        assert [t["attempts"] for t in transcode] == [1]


@pytest.mark.slow
def test_sigterm_on_a_busy_worker_with_time_to_finish_completes_the_task(
    backend_url, tmp_path, media_root, long_clip
):
    with fleet(backend_url, tmp_path, media_root, "pubsub", KILN_WORKER_DRAIN_SECONDS="120") as (
        cluster,
        server,
        _fake,
    ):
        auth = auth_for(cluster, "org_finish")
        worker = cluster.start_worker(server)
        job = create_job(server, auth, f"file://{long_clip}")
        stub = server.job_stub()
        wait_for_progress(stub, auth, job.id)
        worker.send_signal(signal.SIGTERM)
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
    stop, dispatch, backend_url, tmp_path, media_root, long_clip
):
    with fleet(backend_url, tmp_path, media_root, dispatch) as (cluster, server, _fake):
        auth = auth_for(cluster, "org_restart")
        cluster.start_worker(server)
        job = create_job(server, auth, f"file://{long_clip}", outputs=[mp4_output("360p")])
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
def test_cancel_reaches_a_pubsub_dispatched_worker_within_a_second(
    backend_url, tmp_path, media_root, long_clip
):
    with fleet(backend_url, tmp_path, media_root, "pubsub") as (cluster, server, fake):
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
        assert fake.wait_until(lambda: fake.outstanding(subscription) == 0, timeout=10)
        assert fake.backlog(subscription) == 0


def test_a_worker_holds_its_message_while_the_server_restarts(tmp_path, media_root, backend_url):
    # Two deliveries at most: handing the message back even twice would dead-letter it.
    with fleet(backend_url, tmp_path, media_root, "pubsub", KILN_PUBSUB_MAX_DELIVERIES="2") as (
        cluster,
        server,
        fake,
    ):
        auth = auth_for(cluster, "org_hold")
        job = create_job(server, auth, f"file://{media_root / 'fleet.mp4'}")
        settings = pubsub_settings(cluster)
        topic = settings.topic(job_pb2.PRIORITY_STANDARD)
        assert fake.wait_until(lambda: len(fake.published(topic)) == 1, timeout=10)
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=20) == 0
        worker = cluster.start_worker(server)
        worker_log = cluster.root / "worker-0.log"
        wait_until(lambda: "server unreachable" in worker_log.read_text(), timeout=20)
        restarted = cluster.restart_server(server)
        final = run_to_end(restarted, auth, job.id)
        assert final.status == job_pb2.JOB_STATUS_COMPLETED, final.error
        probe_message = fake.published(topic)[0]
        subscription = settings.subscription(job_pb2.PRIORITY_STANDARD)
        assert fake.delivery_count(subscription, probe_message.message_id) == 1
        assert fake.published(settings.dead_letter_topic) == []
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
