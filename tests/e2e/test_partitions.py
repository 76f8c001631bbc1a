"""Faults that cross a network: each worker on a test host of its own (a network namespace
with a veth link to the server, tests/support/netns.py), partitioned mid-encode by taking
its link down. On PostgreSQL, as a fleet runs.

Shorter than the lease, a partition costs nothing: the worker's heartbeat gets through when
the link is back and the task is not run again. Longer, the lease expires, the task runs
again on another worker, and when the link comes back the old worker's late reports are
refused (ABORTED): it stops, and exactly one set of files is stored.

The longer partition also runs with KILN_DISPATCH=pubsub on Google's emulator, which the
worker reaches over its link as it reaches the server, so the cut takes both away. The
reaper publishes the requeued task again; the message the cut-off worker held, which it
cannot extend, expires (the partition is held past the ack deadline) and comes back; each
copy is claimed by task id, so the one that does not run the task finds it leased or done
and is acked. (Were the partition shorter than the ack deadline, or had no worker pulled
the expired message before the link came back, the late worker's own ack would land
instead: both were seen.) The shorter partition stays on db: under the lease it is far
under the ack deadline too, so the message stays with the worker that runs the task and
Pub/Sub changes nothing in what happens; claim and heartbeat cross the same link on both
backends.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from kiln.v1 import job_pb2, job_service_pb2

from common.pubsub import PubSubSettings
from tests.conftest import create_postgres_database, drop_postgres_database
from tests.http_origins import HeldMedia, Origin, hold_on
from tests.support.netns import NetworkHost, network_hosts
from tests.support.processes import ffmpeg_children_of, wait_until
from tests.support.pubsub_audit import CLIENT_LOG_ENV, Audit, SubscriberCalls, kiln_topics
from tests.support.pubsub_emulator import PubSubEmulator, running_emulator

from .cluster import Cluster, KilnProcess, ServerProcess
from .jobs import create_job, mp4_output, run_to_end

TOKEN = "partition-test-token"
# The Pub/Sub fleet's ack deadline (the emulator honours one this short): a partition the
# test holds past it makes the message a cut-off worker holds come back, as one held past
# the default 20 s would on a longer partition.
ACK_DEADLINE_SECONDS = 5


@pytest.fixture
def hosts() -> Iterator[list[NetworkHost]]:
    with network_hosts(2) as made:
        yield made


@pytest.fixture
def held_input(hosts, held_clip) -> Iterator[HeldMedia]:
    """The e2e `held_input`, on an origin at this machine's end of the first host's link:
    the encode it feeds stays mid-way until the test releases it, so the cut always lands
    on a running FFmpeg. (The longer partition keeps a local clip: there the cut-off
    worker's input must stay readable, as a shared disk is, for it to report late.)"""
    origin = Origin(hosts[0].server_address)
    held = hold_on(origin, held_clip)
    try:
        yield held
    finally:
        held.release()
        origin.close()


@pytest.fixture(scope="module")
def reachable_emulator(tmp_path_factory) -> Iterator[PubSubEmulator]:
    """Google's Pub/Sub emulator on every address of this machine, as the server's worker
    listener is (KILN_WORKER_HOST=0.0.0.0): a worker on a test host reaches it over its veth
    link, so a cut link cuts it off from Pub/Sub as from the server. One per module, started
    only when a pubsub test runs; fails (never skips) when it is not installed."""
    root = tmp_path_factory.mktemp("pubsub-emulator")
    with running_emulator(root, listen_host="0.0.0.0") as emulator:
        yield emulator


@dataclass
class Dispatch:
    """How ready tasks reach the workers: the server's queue (db), or Pub/Sub through the
    emulator, with an audit subscription on each of the fleet's topics."""

    name: str
    settings: dict[str, str] = field(default_factory=dict)
    emulator: PubSubEmulator | None = None
    audit: Audit | None = None

    def worker_settings(self, host: NetworkHost) -> dict[str, str]:
        """A worker on `host` reaches the emulator at this machine's end of its link."""
        if self.emulator is None:
            return {}
        return {"PUBSUB_EMULATOR_HOST": self.emulator.reached_at(host.server_address)}


@pytest.fixture
def dispatch(request) -> Iterator[Dispatch]:
    """`db` or `pubsub` (indirect parametrization)."""
    if request.param == "db":
        yield Dispatch("db", {"KILN_DISPATCH": "db"})
        return
    emulator = request.getfixturevalue("reachable_emulator")
    settings = {
        "KILN_DISPATCH": "pubsub",
        "PUBSUB_EMULATOR_HOST": emulator.host,  # the server's: on loopback
        "KILN_PUBSUB_PROJECT": "kiln-partitions",
        # A prefix of its own per test: one emulator per module.
        "KILN_PUBSUB_PREFIX": f"p{uuid.uuid4().hex[:8]}",
        "KILN_PUBSUB_ACK_DEADLINE_SECONDS": str(ACK_DEADLINE_SECONDS),
        **CLIENT_LOG_ENV,
    }
    audit = Audit(emulator.host)
    try:
        audit.watch(*kiln_topics(PubSubSettings.from_env(settings)))
        yield Dispatch("pubsub", settings, emulator, audit)
    finally:
        audit.close()


def partition_cluster(
    database_url: str,
    root: Path,
    media_root: Path,
    lease_seconds: int,
    dispatch: Dispatch | None = None,
) -> tuple[Cluster, ServerProcess]:
    cluster = Cluster(
        database_url,
        root,
        media_root,
        settings=dict(
            KILN_LEASE_SECONDS=str(lease_seconds),
            # Reached over the veth links, so not on loopback: a token is required.
            KILN_WORKER_HOST="0.0.0.0",
            KILN_WORKER_TOKEN=TOKEN,
            # The held input's origin is on a test host's link.
            KILN_INPUT_ALLOW_HOSTS="10.77.0.0/16",
            **(dispatch.settings if dispatch else {}),
        ),
    )
    return cluster, cluster.start_server()


@pytest.fixture
def database_url(postgres_available) -> Iterator[str]:
    url = create_postgres_database()
    try:
        yield url
    finally:
        drop_postgres_database(url)


def worker_on(
    cluster: Cluster,
    server: ServerProcess,
    host: NetworkHost,
    name: str,
    dispatch: Dispatch | None = None,
    concurrency: int = 1,
) -> KilnProcess:
    return cluster.start_worker(
        server,
        concurrency,
        extra_env={
            "KILN_SERVER_ADDRESS": f"{host.server_address}:{server.worker_port}",
            "KILN_WORKER_ID": name,
            **(dispatch.worker_settings(host) if dispatch else {}),
        },
        inside=host.command,
    )


def task_attempts(database_url: str, job_id: str) -> dict[str, int]:
    with psycopg.connect(database_url) as connection:
        rows = connection.execute(
            "SELECT kind, attempts FROM tasks WHERE job_id = %s", (job_id,)
        ).fetchall()
    return {kind: attempts for kind, attempts in rows}


def hold_partition(seconds: float) -> None:
    """The fault's own duration, as a chaos schedule would hold it: not a wait standing in
    for synchronisation (what follows waits on conditions)."""
    time.sleep(max(seconds, 0))


def worker_log_path(cluster: Cluster, worker: KilnProcess) -> Path:
    """The cluster names logs by start order."""
    return cluster.root / f"worker-{cluster.workers.index(worker)}.log"


def worker_log(cluster: Cluster, worker: KilnProcess) -> Callable[[], str]:
    """Reads the worker's log as it is now."""
    return worker_log_path(cluster, worker).read_text


def stored_files(cluster: Cluster, job: job_pb2.Job) -> set[str]:
    folder = cluster.storage_dir / job.id
    return {str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file()}


def transcode_message_ids(dispatch: Dispatch, cluster: Cluster, job_id: str) -> list[str]:
    """The messages published for the job's transcode task so far, in order."""
    with psycopg.connect(cluster.database_url) as connection:
        [(task_id,)] = connection.execute(
            "SELECT id FROM tasks WHERE job_id = %s AND kind = 'TRANSCODE'", (job_id,)
        ).fetchall()
    assert dispatch.audit is not None
    topic = PubSubSettings.from_env(dispatch.settings).topic(job_pb2.PRIORITY_STANDARD)
    return [
        message.message_id
        for message in dispatch.audit.messages(topic)
        if json.loads(message.data)["task_id"] == task_id
    ]


def all_workers_calls(cluster: Cluster) -> SubscriberCalls:
    """What every worker's Pub/Sub client received, acked and handed back so far."""
    return SubscriberCalls.from_logs(*sorted(cluster.root.glob("worker-*.log")))


def held_message_came_back(dispatch: Dispatch, cluster: Cluster, job_id: str) -> bool:
    """The first transcode message (the one the cut-off worker took) was delivered again:
    its ack deadline ran out while the worker could not extend it."""
    first = transcode_message_ids(dispatch, cluster, job_id)[0]
    return any(attempt > 1 for attempt in all_workers_calls(cluster).attempts(first))


def settled(calls: SubscriberCalls, message_id: str) -> bool:
    """The latest delivery of the message that reached a worker was acked."""
    deliveries = [d for d in calls.deliveries if d.message_id == message_id]
    return bool(deliveries) and max(deliveries, key=lambda d: d.attempt).ack_id in calls.acked


def assert_redeliveries_harmless(
    dispatch: Dispatch, cluster: Cluster, job_id: str, cut_off: KilnProcess
) -> None:
    """On Pub/Sub: the reaper published the task again; the message the cut-off worker
    held expired and came back; every copy was claimed by task id (one ran it, the others
    found it leased or done and acked) and nothing is left waiting."""
    assert dispatch.audit is not None
    # The first dispatch and the reaper's: no other message for the task.
    first, requeued = transcode_message_ids(dispatch, cluster, job_id)
    wait_until(lambda: held_message_came_back(dispatch, cluster, job_id), timeout=30)
    wait_until(
        lambda: (
            (calls := all_workers_calls(cluster)).pending_acks == 0
            and settled(calls, first)
            and settled(calls, requeued)
        ),
        timeout=30,
    )
    late = SubscriberCalls.from_logs(worker_log_path(cluster, cut_off))
    [held] = [d for d in late.deliveries if d.message_id == first]
    assert held.attempt == 1
    # Its own ack, sent once the link was back, carries the expired delivery's ack id; the
    # copy that came back was settled by the worker that got it (above).
    wait_until(
        lambda: held.ack_id in SubscriberCalls.from_logs(worker_log_path(cluster, cut_off)).acked,
        timeout=20,
    )
    subscription = PubSubSettings.from_env(dispatch.settings).subscription(
        job_pb2.PRIORITY_STANDARD
    )
    assert dispatch.audit.backlog(subscription) == 0


def test_a_partition_shorter_than_the_lease_costs_no_rerun(
    hosts, database_url, tmp_path, media_root, held_input
):
    cluster, server = partition_cluster(database_url, tmp_path, media_root, lease_seconds=6)
    try:
        near, _ = hosts
        auth = (("authorization", f"Bearer {cluster.create_key('org_partition')}"),)
        worker = worker_on(cluster, server, near, "near")
        job = create_job(server, auth, held_input.url, outputs=[mp4_output("480p")])
        wait_until(lambda: ffmpeg_children_of(worker.pid), timeout=60)

        near.cut()
        # A quarter of the lease: a heartbeat (or the result, if the encode ends meanwhile)
        # sent into the cut gets through when the link is back (TCP retransmits it).
        hold_partition(1.5)
        near.mend()
        held_input.release()

        final = run_to_end(server, auth, job.id, timeout=120)
        assert final.status == job_pb2.JOB_STATUS_COMPLETED, final.error
        assert task_attempts(database_url, job.id) == {"PROBE": 1, "TRANSCODE": 1}
    except Exception:
        print(cluster.logs())
        raise
    finally:
        cluster.stop()


@pytest.mark.parametrize("dispatch", ["db", "pubsub"], indirect=True)
def test_a_partition_longer_than_the_lease_reruns_once_and_refuses_the_late_worker(
    dispatch, hosts, database_url, tmp_path, media_root, long_clip
):
    cluster, server = partition_cluster(
        database_url, tmp_path, media_root, lease_seconds=3, dispatch=dispatch
    )
    try:
        near, far = hosts
        auth = (("authorization", f"Bearer {cluster.create_key('org_partition')}"),)
        cut_off = worker_on(cluster, server, near, "cut-off", dispatch)
        job = create_job(server, auth, f"file://{long_clip}", outputs=[mp4_output("480p")])
        wait_until(lambda: ffmpeg_children_of(cut_off.pid), timeout=60)
        # Idle on another host: the only task is leased. Two slots: while one runs the
        # rerun, the other keeps pulling, so a message that comes back reaches a worker.
        taker = worker_on(cluster, server, far, "taker", dispatch, concurrency=2)

        near.cut()
        cut_at = time.monotonic()
        # The lease expires, the reaper queues the task again, the other worker takes it.
        wait_until(lambda: task_attempts(database_url, job.id).get("TRANSCODE") == 2, timeout=30)
        wait_until(lambda: ffmpeg_children_of(taker.pid), timeout=30)
        if dispatch.name == "pubsub":
            # Longer than the ack deadline too (with a second's margin for the emulator's
            # expiry): the message the cut-off worker holds, unextended since the cut,
            # expires.
            hold_partition(ACK_DEADLINE_SECONDS + 1 - (time.monotonic() - cut_at))
        still_encoding = bool(ffmpeg_children_of(cut_off.pid))
        near.mend()

        if still_encoding:
            # Its next heartbeat is refused: it stops its FFmpeg rather than work for nobody.
            wait_until(lambda: not ffmpeg_children_of(cut_off.pid), timeout=20)
        final = run_to_end(server, auth, job.id, timeout=120)
        assert final.status == job_pb2.JOB_STATUS_COMPLETED, final.error
        assert task_attempts(database_url, job.id) == {"PROBE": 1, "TRANSCODE": 2}
        # Whatever the late worker sent was refused as a stale lease (ABORTED), and it
        # said so: either its heartbeat ("lease lost") or its result ("report refused").
        late = worker_log(cluster, cut_off)
        wait_until(lambda: "lease lost" in late() or "report refused" in late(), timeout=30)
        assert cut_off.poll() is None, "the late worker should carry on with other work"
        # One set of files: what the job lists is what storage holds for it.
        output = final.outputs[0]
        listed = {f"{output.id}/{file.path}" for file in output.files}
        assert listed and stored_files(cluster, final) == listed
        # The job's log: exactly one completed output event.
        events = list(
            server.job_stub().Watch(
                job_service_pb2.WatchRequest(id=job.id, after_sequence=0), metadata=auth
            )
        )
        completed_outputs = [
            e
            for e in events
            if e.WhichOneof("event") == "output"
            and e.output.output.status == job_pb2.OUTPUT_STATUS_COMPLETED
        ]
        assert len(completed_outputs) == 1
        if dispatch.name == "pubsub":
            assert_redeliveries_harmless(dispatch, cluster, job.id, cut_off)
    except Exception:
        print(cluster.logs())
        raise
    finally:
        cluster.stop()
