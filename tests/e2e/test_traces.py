"""One trace per job, across processes: the Create RPC on the server, the dispatch (publish,
claim), the worker's task and its FFmpeg steps.

Each process writes its finished spans to a file of its own (KILN_TRACE_FILE: a
SimpleSpanProcessor with a JSON-lines exporter, the per-process in-memory exporter made
readable from here); the test joins them by span id.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from kiln.v1 import job_pb2

from tests.support import plain_http
from tests.support.pubsub_emulator import PubSubEmulator

from .cluster import Cluster
from .jobs import create_job, run_to_end

CLIENT_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_TRACEPARENT = f"00-{CLIENT_TRACE_ID}-00f067aa0ba902b7-01"
# Garbage, and a well-formed one with the all-zero ids W3C forbids.
MALFORMED_TRACEPARENTS = [
    "00-not-a-trace-01" + "x" * 300,
    "00-" + "0" * 32 + "-" + "0" * 16 + "-01",
]


def read_spans(*paths: Path) -> list[dict]:
    spans = []
    for path in paths:
        if path.exists():
            spans += [json.loads(line) for line in path.read_text().splitlines() if line]
    return spans


def ancestors(span: dict, by_id: dict[str, dict]) -> list[dict]:
    """The span's parents up to the root of what was recorded (nearest first)."""
    chain = []
    while span["parent_span_id"] in by_id:
        span = by_id[span["parent_span_id"]]
        chain.append(span)
    return chain


def job_spans(spans: list[dict], job_id: str, name: str) -> list[dict]:
    return [s for s in spans if s["name"] == name and s["attributes"].get("kiln.job.id") == job_id]


def wait_for_spans(paths: tuple[Path, ...], job_id: str, timeout: float = 15) -> list[dict]:
    """Spans once the job's upload and both task spans have ended (the worker closes its
    task span just after the server recorded the result the Watch ended on)."""
    deadline = time.monotonic() + timeout
    while True:
        spans = read_spans(*paths)
        tasks = job_spans(spans, job_id, "kiln.worker.task")
        uploads = [s for s in spans if s["name"] == "kiln.worker.upload"]
        if (len(tasks) >= 2 and uploads) or time.monotonic() > deadline:
            return spans
        time.sleep(0.2)


def assert_one_trace(spans: list[dict], job: job_pb2.Job, create_rpc: str) -> dict:
    """Every span of the job hangs, through the claims and tasks, under its Create RPC."""
    by_id = {s["span_id"]: s for s in spans}
    tasks = job_spans(spans, job.id, "kiln.worker.task")
    kinds = sorted(s["attributes"]["kiln.task.kind"] for s in tasks)
    assert kinds == ["PROBE", "TRANSCODE"], kinds
    trace_id = tasks[0]["trace_id"]
    in_trace = [s for s in spans if s["trace_id"] == trace_id]
    for task in tasks:
        assert task["trace_id"] == trace_id
        assert task["service"] == "kiln-worker"
        chain = ancestors(task, by_id)
        names = [s["name"] for s in chain]
        # The task's parent is the server's claim of it, in the same trace.
        assert chain[0]["name"] == "kiln.dispatch.claim", names
        assert chain[0]["service"] == "kiln-server"
        assert chain[0]["attributes"]["kiln.task.id"] == task["attributes"]["kiln.task.id"]
        root = chain[-1]
        assert root["name"] == create_rpc, names
        assert root["kind"] == "SERVER"
    steps = {s["name"]: s for s in in_trace if s["service"] == "kiln-worker"}
    for name in ("kiln.worker.stage_in", "kiln.worker.probe", "kiln.worker.encode"):
        assert name in steps, sorted(steps)
    for name in ("kiln.worker.package", "kiln.worker.upload"):
        assert name in steps, sorted(steps)
    encode = steps["kiln.worker.encode"]
    assert encode["attributes"]["kiln.encode.codec"] == "h264"
    assert encode["attributes"]["kiln.encode.resolution"] == "240p"
    assert encode["attributes"]["kiln.encode.realtime_factor"] > 0
    assert steps["kiln.worker.upload"]["attributes"]["kiln.upload.files"] >= 1
    assert steps["kiln.worker.probe"]["attributes"]["kiln.input.duration_seconds"] > 0
    # The worker's reports (heartbeats, results) and their SQL are in the job's trace too.
    rpcs = {s["name"] for s in in_trace if s["service"] == "kiln-server" and s["kind"] == "SERVER"}
    assert "/kiln.worker.v1.WorkerService/CompleteTask" in rpcs, rpcs
    assert any(
        "db.system" in s["attributes"] or "db.system.name" in s["attributes"] for s in in_trace
    )
    return by_id[tasks[0]["parent_span_id"]]


@contextmanager
def traced_cluster(
    root: Path, media_root: Path, emulator: PubSubEmulator | None = None
) -> Iterator[tuple]:
    """A server and a worker, each writing its spans to a file: (cluster, server, files).
    Dispatched through Pub/Sub on `emulator` when there is one, else by the database."""
    files = (root / "server-spans.jsonl", root / "worker-spans.jsonl")
    settings = {"KILN_DISPATCH": "db", "KILN_TRACE_FILE": str(files[0])}
    if emulator is not None:
        settings |= {
            "KILN_DISPATCH": "pubsub",
            "PUBSUB_EMULATOR_HOST": emulator.host,
            "KILN_PUBSUB_PROJECT": "kiln-e2e",
            "KILN_PUBSUB_PREFIX": f"t{uuid.uuid4().hex[:8]}",
        }
    database = f"sqlite:///{root / 'kiln.db'}"
    cluster = Cluster(database, root / "cluster", media_root, settings=settings)
    cluster.root.mkdir()
    try:
        server = cluster.start_server()
        cluster.start_worker(server, concurrency=2, extra_env={"KILN_TRACE_FILE": str(files[1])})
        yield cluster, server, files
    except BaseException:
        print(cluster.logs())
        raise
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def db_traced(tmp_path_factory, media_root):
    with traced_cluster(tmp_path_factory.mktemp("traced-db"), media_root) as traced:
        yield traced


MP4_240P = {
    "type": "OUTPUT_TYPE_MP4",
    "video": [{"codec": "VIDEO_CODEC_H264", "resolution": "240p"}],
}


def connect_create(server, key: str, clip: str, traceparent: str) -> str:
    answer = plain_http.post(
        f"{server.http_url}/kiln.v1.JobService/Create",
        json={"input_url": clip, "outputs": [MP4_240P]},
        headers={"Authorization": f"Bearer {key}", "traceparent": traceparent},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["job"]["id"]


@pytest.mark.slow
def test_a_job_is_one_trace_from_its_create_to_the_worker_encode(db_traced, media_root):
    cluster, server, files = db_traced
    key = cluster.create_key("org_traces")
    clip = f"file://{media_root / 'clip2s.mp4'}"
    auth = (("authorization", f"Bearer {key}"),)
    # Over gRPC, no trace context from the client: the Create span is the root.
    grpc_id = create_job(server, auth, clip).id
    # Over Connect, inside the client's trace: the Create span continues it.
    connect_id = connect_create(server, key, clip, CLIENT_TRACEPARENT)
    jobs = {job_id: run_to_end(server, auth, job_id) for job_id in (grpc_id, connect_id)}
    assert {job.status for job in jobs.values()} == {job_pb2.JOB_STATUS_COMPLETED}
    wait_for_spans(files, grpc_id)
    spans = wait_for_spans(files, connect_id)

    claim = assert_one_trace(spans, jobs[grpc_id], "/kiln.v1.JobService/Create")
    assert claim["attributes"]["kiln.dispatch.backend"] == "db"
    roots = [s for s in spans if s["trace_id"] == claim["trace_id"] and not s["parent_span_id"]]
    assert [s["name"] for s in roots] == ["/kiln.v1.JobService/Create"]
    assert roots[0]["attributes"]["kiln.job.id"] == grpc_id

    claim = assert_one_trace(spans, jobs[connect_id], "kiln.v1.JobService/Create")
    assert claim["trace_id"] == CLIENT_TRACE_ID
    create = job_spans(spans, connect_id, "kiln.v1.JobService/Create")[0]
    assert create["parent_span_id"] == CLIENT_TRACEPARENT.split("-")[2]
    assert create["attributes"]["rpc.system.name"] == "connectrpc"


@pytest.mark.slow
def test_a_malformed_traceparent_starts_a_new_trace_and_is_never_an_error(db_traced, media_root):
    cluster, server, files = db_traced
    key = cluster.create_key("org_traces_bad")
    clip = f"file://{media_root / 'clip2s.mp4'}"
    auth = (("authorization", f"Bearer {key}"),)
    ids = [
        connect_create(server, key, clip, MALFORMED_TRACEPARENTS[0]),
        create_job(server, (*auth, ("traceparent", MALFORMED_TRACEPARENTS[1])), clip).id,
    ]
    for job_id in ids:
        assert run_to_end(server, auth, job_id).status == job_pb2.JOB_STATUS_COMPLETED
    spans = read_spans(*files)
    traces = set()
    for job_id in ids:
        # The Create began a trace of its own, and the job's work joined it.
        (create,) = [
            s
            for s in spans
            if s["name"].endswith("JobService/Create")
            and s["attributes"].get("kiln.job.id") == job_id
        ]
        assert create["parent_span_id"] == ""
        claims = job_spans(spans, job_id, "kiln.dispatch.claim")
        assert claims and {s["trace_id"] for s in claims} == {create["trace_id"]}
        traces.add(create["trace_id"])
    assert len(traces) == len(ids)


@pytest.mark.slow
def test_a_pubsub_dispatched_job_is_one_trace_through_its_message(
    tmp_path, media_root, pubsub_emulator
):
    with traced_cluster(tmp_path, media_root, pubsub_emulator) as (cluster, server, files):
        key = cluster.create_key("org_traces")
        auth = (("authorization", f"Bearer {key}"),)
        job = create_job(server, auth, f"file://{media_root / 'clip2s.mp4'}")
        job = run_to_end(server, auth, job.id)
        assert job.status == job_pb2.JOB_STATUS_COMPLETED
        spans = wait_for_spans(files, job.id)
    claim = assert_one_trace(spans, job, "/kiln.v1.JobService/Create")
    assert claim["attributes"]["kiln.dispatch.backend"] == "pubsub"
    publishes = job_spans(spans, job.id, "kiln.dispatch.publish")
    assert len(publishes) == 2  # the probe task, then the transcode task
    assert {s["trace_id"] for s in publishes} == {claim["trace_id"]}
    assert all(s["kind"] == "PRODUCER" for s in publishes)
    # The worker's claim call continued the message's context: it hangs under a publish.
    by_id = {s["span_id"]: s for s in spans}
    claim_rpcs = [
        s
        for s in spans
        if s["name"] == "/kiln.worker.v1.WorkerService/ClaimTask"
        and s["trace_id"] == claim["trace_id"]
    ]
    assert claim_rpcs
    assert all(by_id[s["parent_span_id"]]["name"] == "kiln.dispatch.publish" for s in claim_rpcs)
