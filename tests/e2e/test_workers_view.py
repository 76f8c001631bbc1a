"""Operators see their fleet: workers announce themselves, `kiln workers list` shows each
one's state, slots and running tasks; a worker pointed at the wrong port stops at once; a
bad announcement is refused by field and stores nothing."""

from __future__ import annotations

import json
import math
import queue
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from typing import IO

import grpc
import psycopg
import pytest
from kiln.worker.v1 import worker_service_pb2 as wpb
from kiln.worker.v1 import worker_service_pb2_grpc

from tests.conftest import create_postgres_database, drop_postgres_database
from tests.support.processes import ffmpeg_children_of, wait_until
from tests.support.violations import violations_from_grpc

from .cluster import LOOPBACK_INPUTS, Cluster, ServerProcess, kiln_command
from .jobs import create_job, mp4_output


@pytest.fixture
def fleet_cluster(
    postgres_available, tmp_path, media_root
) -> Iterator[tuple[Cluster, ServerProcess]]:
    url = create_postgres_database()
    cluster = Cluster(
        url, tmp_path, media_root, settings=dict(KILN_LEASE_SECONDS="3", **LOOPBACK_INPUTS)
    )
    try:
        yield cluster, cluster.start_server()
    except Exception:
        print(cluster.logs())
        raise
    finally:
        cluster.stop()
        drop_postgres_database(url)


def listed(cluster: Cluster) -> dict[str, dict]:
    """`kiln workers list --json`, as an operator runs it next to the database."""
    result = subprocess.run(
        kiln_command("workers", "list", "--json"),
        env=cluster.env(),
        cwd=cluster.root,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return {worker["id"]: worker for worker in json.loads(result.stdout)}


def announced(cluster: Cluster) -> dict[str, tuple[str, float]]:
    """{worker id: (state it announced, seconds since)} read from the database directly: a
    cheap poll while waiting for a change, which the CLI then shows."""
    with psycopg.connect(cluster.database_url) as connection:
        rows = connection.execute(
            "SELECT id, state, EXTRACT(EPOCH FROM now() - last_contact_at) FROM workers"
        ).fetchall()
    return {worker_id: (state, float(silent)) for worker_id, state, silent in rows}


def test_workers_announce_and_operators_see_them_active_draining_and_lost(
    fleet_cluster, held_input
):
    cluster, server = fleet_cluster
    busy = cluster.start_worker(
        server,
        concurrency=2,
        # On SIGTERM it finishes its task: DRAINING for as long as its input is held.
        extra_env={"KILN_WORKER_ID": "busy-1", "KILN_WORKER_DRAIN_SECONDS": "120"},
    )
    # A running task shows against the worker that holds it.
    auth = (("authorization", f"Bearer {cluster.create_key('org_view')}"),)
    # Held mid-encode: still encoding through the listings below, whatever their speed (a
    # drain that ran out first would show the worker gone).
    create_job(server, auth, held_input.url, outputs=[mp4_output("480p")])
    wait_until(lambda: ffmpeg_children_of(busy.pid), timeout=60)
    assert listed(cluster)["busy-1"]["running_tasks"] == 1
    idle = cluster.start_worker(server, extra_env={"KILN_WORKER_ID": "idle-1"})
    wait_until(lambda: {"busy-1", "idle-1"} <= set(announced(cluster)), timeout=30)
    fleet = listed(cluster)
    assert fleet["busy-1"]["state"] == fleet["idle-1"]["state"] == "ACTIVE"
    assert (fleet["busy-1"]["capacity"], fleet["idle-1"]["capacity"]) == (2, 1)
    assert fleet["idle-1"]["running_tasks"] == 0
    assert fleet["busy-1"]["host"] == socket.gethostname()
    assert "libx264" in fleet["busy-1"]["encoders"]
    assert {"PROBE", "TRANSCODE", "CHUNK", "AUDIO", "MERGE"} <= set(fleet["busy-1"]["task_kinds"])

    # SIGTERM: DRAINING while it winds down, then it exits.
    busy.send_signal(signal.SIGTERM)
    wait_until(lambda: announced(cluster)["busy-1"][0] == "DRAINING", timeout=15)
    assert listed(cluster)["busy-1"]["state"] == "DRAINING"
    held_input.release()
    assert busy.wait(timeout=60) == 0

    # Killed outright: LOST once silent for a whole lease (3 s here).
    idle.send_signal(signal.SIGKILL)
    idle.wait()
    wait_until(lambda: announced(cluster)["idle-1"][1] > 3.5, timeout=20)
    assert listed(cluster)["idle-1"]["state"] == "LOST"


def test_a_worker_pointed_at_the_public_port_stops_with_one_line(fleet_cluster):
    cluster, server = fleet_cluster
    result = subprocess.run(
        kiln_command("worker"),
        env=cluster.env(KILN_SERVER_ADDRESS=server.grpc_target),
        cwd=cluster.root,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    said = [line for line in result.stderr.splitlines() if "refusing to start" in line]
    assert len(said) == 1, result.stderr
    assert f"KILN_SERVER_ADDRESS={server.grpc_target}" in said[0]
    assert "worker port" in said[0]
    assert "claiming a task failed" not in result.stderr


def test_a_worker_that_could_not_reach_the_public_port_at_start_still_stops(fleet_cluster):
    """The first announcement fails for another reason (the server is down), so the worker
    starts; when the server is back, the address answers UNIMPLEMENTED (its public port) and
    the worker stops with the same line instead of warning about failed claims for ever."""
    cluster, server = fleet_cluster
    server.process.terminate()
    assert server.process.wait(timeout=20) == 0
    worker = subprocess.Popen(
        kiln_command("worker"),
        env=cluster.env(KILN_SERVER_ADDRESS=server.grpc_target),
        cwd=cluster.root,
        stderr=subprocess.PIPE,
        text=True,
    )
    said: list[str] = []
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_lines_to, args=(worker.stderr, lines), daemon=True).start()
    try:
        # The worker logs the failed first announcement, then runs.
        while not any("unreachable" in line and "at start" in line for line in said):
            line = lines.get(timeout=60)
            assert line is not None, f"the worker ended before announcing: {said}"
            said.append(line)
        cluster.restart_server(server)
        assert worker.wait(timeout=60) == 2, "".join(said)
    finally:
        if worker.poll() is None:
            worker.kill()
        worker.wait()
    while (line := lines.get(timeout=10)) is not None:
        said.append(line)
    refusals = [line for line in said if "refusing to start" in line]
    assert len(refusals) == 1, "".join(said)
    assert f"KILN_SERVER_ADDRESS={server.grpc_target}" in refusals[0]
    assert "worker port" in refusals[0]
    # One line, not a line and a traceback of the slots it stopped.
    assert not any("Traceback" in line or "ERROR" in line for line in said), "".join(said)


def _lines_to(stream: IO[str] | None, lines: queue.Queue[str | None]) -> None:
    assert stream is not None
    for line in stream:
        lines.put(line)
    lines.put(None)


def speed(kind: str, factor: float, samples: int = 3) -> wpb.EncodeSpeed:
    return wpb.EncodeSpeed(speed_class=kind, realtime_factor=factor, samples=samples)


ABSURD = [-1.0, 0.0, math.nan, math.inf, 1e9]

BAD_ANNOUNCEMENTS = [
    ({"worker_id": ""}, "worker_id"),
    ({"worker_id": "w" * 201}, "worker_id"),
    ({"worker_id": "a/b"}, "worker_id"),
    ({"host": ""}, "host"),
    ({"capacity": 0}, "capacity"),
    ({"capacity": 5000}, "capacity"),
    ({"state": wpb.WORKER_STATE_UNSPECIFIED}, "state"),
    ({"task_kinds": [wpb.TASK_KIND_UNSPECIFIED]}, "task_kinds[0]"),
    ({"task_kinds": [99]}, "task_kinds[0]"),
    ({"encoders": ["x" * 65]}, "encoders[0]"),
    ({"encoders": [f"e{i}" for i in range(501)]}, "encoders"),
    # A forged or broken speed would skew every ETA of its kind of output.
    *[({"speeds": [speed("h264/720", factor)]}, "speeds[0].realtime_factor") for factor in ABSURD],
    ({"speeds": [speed("h264/721", 1.0)]}, "speeds[0].speed_class"),
    ({"speeds": [speed("audio", 1.0), speed("audio", 2.0)]}, "speeds[1].speed_class"),
    ({"speeds": [speed("audio", 1.0, samples=0)]}, "speeds[0].samples"),
    ({"speeds": [speed("audio", 1.0)] * 65}, "speeds"),
]


def test_a_bad_announcement_is_refused_by_field_and_stores_nothing(fleet_cluster):
    cluster, server = fleet_cluster
    stub = worker_service_pb2_grpc.WorkerServiceStub(grpc.insecure_channel(server.worker_target))
    for change, field in BAD_ANNOUNCEMENTS:
        request = wpb.AnnounceWorkerRequest(
            worker_id="forged",
            host="h",
            capacity=1,
            task_kinds=[wpb.TASK_KIND_PROBE],
            state=wpb.WORKER_STATE_ACTIVE,
        )
        for name, value in change.items():
            if isinstance(value, list):
                request.ClearField(name)
                getattr(request, name).extend(value)
            else:
                setattr(request, name, value)
        with pytest.raises(grpc.RpcError) as refused:
            stub.AnnounceWorker(request, timeout=10)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, change
        assert field in violations_from_grpc(refused.value), (change, refused.value.details())
    assert listed(cluster) == {}
    # The listener still serves: a good announcement is taken. (Read from the table: the
    # CLI would judge "good" LOST if its own start took longer than the 3 s lease.)
    stub.AnnounceWorker(
        wpb.AnnounceWorkerRequest(
            worker_id="good",
            host="h",
            capacity=1,
            state=wpb.WORKER_STATE_ACTIVE,
            speeds=[speed("h264/720", 2.5)],
        ),
        timeout=10,
    )
    assert announced(cluster)["good"][0] == "ACTIVE"
    assert listed(cluster)["good"]["speeds"] == {"h264/720": 2.5}
