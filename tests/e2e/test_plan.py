"""PlanJob through the running server: the plan's argument lists against what the worker
then runs, refusals equal to Create's, nothing created, nothing of the server's internals.

The worker's `ffmpeg` is a recording wrapper put first on its PATH: it writes the argument
list it was started with to a file of its own, then execs the real FFmpeg in place. That is
what the worker ran, observed from outside it; the test turns the worker's paths into the
plan's placeholders and compares the lists, every run of a job against every planned one.

One cluster (SQLite: PlanJob reads no job rows) with a low chunking threshold, so a 5 s
clip is chunked and the shared 2 s one is not.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import sqlite3
import subprocess
from collections import Counter
from pathlib import Path

import grpc
import pytest
from kiln.v1 import job_pb2, job_service_pb2

from server.domain.request_json import parse_document
from tests.conftest import make_clip
from tests.support.processes import wait_until
from tests.support.violations import violations_from_connect, violations_from_grpc

from .cluster import SIGNING_KEY, kiln_command, running_cluster
from .connect_json import ConnectJsonClient
from .jobs import run_to_end

SETTINGS = {"KILN_CHUNK_THRESHOLD_SECONDS": "3", "KILN_CHUNK_SECONDS": "2"}
H264 = job_pb2.VIDEO_CODEC_H264
EXIT_API = 4

RECORDER = """#!/bin/sh
# Records the argument list, then becomes the real FFmpeg (same pid: signals still reach it).
record=$(mktemp "{records}/run-XXXXXX")
printf '%s\\0' "$@" > "$record"
exec {ffmpeg} "$@"
"""


@pytest.fixture(scope="module")
def plan_cluster(sqlite_backend_url, tmp_path_factory, media_root):
    root = tmp_path_factory.mktemp("plan")
    records = root / "ffmpeg-runs"
    records.mkdir()
    wrapper_dir = root / "bin"
    wrapper_dir.mkdir()
    real = shutil.which("ffmpeg")
    assert real is not None
    wrapper = wrapper_dir / "ffmpeg"
    wrapper.write_text(RECORDER.format(records=records, ffmpeg=real))
    wrapper.chmod(0o755)
    with running_cluster(sqlite_backend_url, root, media_root, settings=SETTINGS) as (
        cluster,
        server,
    ):
        path = f"{wrapper_dir}:{cluster.env()['PATH']}"
        cluster.start_worker(server, concurrency=2, extra_env={"PATH": path})
        # The worker's one look at its FFmpeg's encoders (worker/announce.py), no task's:
        # recorded before any job's runs are.
        wait_until(lambda: any(records.iterdir()), timeout=90)
        yield cluster, server, records


@pytest.fixture(scope="module")
def auth(plan_cluster):
    cluster, _, _ = plan_cluster
    return (("authorization", f"Bearer {cluster.create_key('org_plan')}"),)


@pytest.fixture(scope="module")
def clip5(media_root) -> Path:
    return make_clip(media_root / "plan5_160x90.mp4", seconds=5, size="160x90")


def runs_of(records: Path, seen: set[Path]) -> list[list[str]]:
    """The argument lists recorded since `seen`, which then holds them too."""
    new = sorted(set(records.iterdir()) - seen)
    seen.update(new)
    return [path.read_bytes().decode().split("\0")[:-1] for path in new]


def as_placeholders(argv: list[str], scratch: Path, inputs: list[Path]) -> list[str]:
    """A recorded run's argv in the plan's terms: the task's folder under the worker's
    scratch is {scratch}, its out/ {output}, the input file {input}."""
    folder = re.compile(re.escape(str(scratch)) + r"/[^/]+")
    names = {str(p) for path in inputs for p in (path, path.resolve())}
    shown = []
    for argument in argv:
        if argument in names:
            shown.append("{input}")
            continue
        in_scratch = folder.sub("{scratch}", argument)
        shown.append(in_scratch.replace("{scratch}/out", "{output}"))
    return shown


def planned_runs(plan: job_service_pb2.PlanJobResponse) -> list[list[str]]:
    runs = []
    for task in plan.tasks:
        for command in task.commands:
            assert command.argv[0] == "ffmpeg"
            runs.append(list(command.argv[1:]))
    return runs


def plan_for(server, auth, request, info=None) -> job_service_pb2.PlanJobResponse:
    plan_request = job_service_pb2.PlanJobRequest(request=request)
    if info is not None:
        plan_request.input.CopyFrom(info)
    return server.job_stub().PlanJob(plan_request, metadata=auth)


def encoded_exactly_as_planned(plan_cluster, auth, request, inputs) -> job_pb2.Job:
    """Runs the request as a job and checks every FFmpeg run against the plan made for
    the input facts the job's probe found; the terminal job."""
    cluster, server, records = plan_cluster
    seen = set(records.iterdir())
    job = run_to_end(server, auth, server.job_stub().Create(request, metadata=auth).job.id)
    assert job.status == job_pb2.JOB_STATUS_COMPLETED, job
    ran = [as_placeholders(argv, cluster.scratch_dir, inputs) for argv in runs_of(records, seen)]
    plan = plan_for(server, auth, request, job.input_info)
    assert Counter(map(tuple, planned_runs(plan))) == Counter(map(tuple, ran))
    assert plan.estimated_cost == job.estimated_cost
    return job


def test_every_run_of_a_job_is_a_planned_one(plan_cluster, auth, media_root):
    """A progressive MP4 with text overlay, an HLS ladder, audio-only and a sprite: four
    outputs, one pass each."""
    clip = media_root / "clip2s.mp4"
    mp4 = job_pb2.OutputSpec(
        type=job_pb2.OUTPUT_TYPE_MP4,
        video=[job_pb2.VideoVariant(codec=H264, resolution="240p")],
        overlays=[job_pb2.Overlay(text=job_pb2.OverlayText(text="PREVIEW"))],
    )
    ladder = job_pb2.OutputSpec(
        type=job_pb2.OUTPUT_TYPE_HLS,
        video=[
            job_pb2.VideoVariant(codec=H264, resolution="240p"),
            job_pb2.VideoVariant(codec=H264, resolution="160x90"),
        ],
        segments=job_pb2.SegmentSpec(duration_seconds=1),
    )
    audio = job_pb2.OutputSpec(type=job_pb2.OUTPUT_TYPE_M4A)
    sprite = job_pb2.OutputSpec(
        type=job_pb2.OUTPUT_TYPE_JPG,
        thumbnail=job_pb2.ThumbnailSpec(
            mode=job_pb2.THUMBNAIL_MODE_SPRITE, interval_seconds=0.5, width=80, columns=2
        ),
    )
    request = job_service_pb2.CreateRequest(
        input_url=f"file://{clip}", outputs=[mp4, ladder, audio, sprite]
    )
    encoded_exactly_as_planned(plan_cluster, auth, request, [clip])


def test_a_chunked_outputs_pieces_and_merge_are_planned(plan_cluster, auth, clip5):
    request = job_service_pb2.CreateRequest(
        input_url=f"file://{clip5}",
        outputs=[
            job_pb2.OutputSpec(
                type=job_pb2.OUTPUT_TYPE_MP4,
                video=[job_pb2.VideoVariant(codec=H264, resolution="160x90")],
            )
        ],
    )
    encoded_exactly_as_planned(plan_cluster, auth, request, [clip5])
    _, server, _ = plan_cluster
    plan = plan_for(server, auth, request, _probed_like())
    kinds = [job_service_pb2.PlanTaskKind.Name(t.kind) for t in plan.tasks]
    assert kinds == [
        "PLAN_TASK_KIND_PROBE",
        "PLAN_TASK_KIND_AUDIO",
        *["PLAN_TASK_KIND_CHUNK"] * 3,
        "PLAN_TASK_KIND_MERGE",
    ]
    assert plan.outputs[0].chunked
    # The merge waits for the pieces, the pieces for the probe.
    assert list(plan.tasks[-1].after) == [1, 2, 3, 4]
    assert all(list(t.after) == [0] for t in plan.tasks[1:-1])
    chunks = sorted((t.chunk.start_seconds, t.chunk.end_seconds) for t in plan.tasks[2:5])
    assert chunks == [(0, 2), (2, 4), (4, 5)]


def test_a_chunked_dash_outputs_fmp4_pieces_are_planned(plan_cluster, auth, clip5):
    """The fMP4 chunks and audio, run as planned; the merge, which writes the MPD from the
    segments' boxes, runs no FFmpeg and says so."""
    request = job_service_pb2.CreateRequest(
        input_url=f"file://{clip5}",
        outputs=[
            job_pb2.OutputSpec(
                type=job_pb2.OUTPUT_TYPE_DASH,
                video=[job_pb2.VideoVariant(codec=H264, resolution="160x90")],
                segments=job_pb2.SegmentSpec(duration_seconds=1),
            )
        ],
    )
    job = encoded_exactly_as_planned(plan_cluster, auth, request, [clip5])
    _, server, _ = plan_cluster
    plan = plan_for(server, auth, request, job.input_info)
    kinds = [job_service_pb2.PlanTaskKind.Name(t.kind) for t in plan.tasks]
    assert kinds.count("PLAN_TASK_KIND_CHUNK") == 3 and kinds[-1] == "PLAN_TASK_KIND_MERGE"
    chunk = next(t for t in plan.tasks if t.kind == job_service_pb2.PLAN_TASK_KIND_CHUNK)
    argv = list(chunk.commands[0].argv)
    assert argv[argv.index("-hls_segment_options") + 1].endswith("+frag_discont")
    merge = plan.tasks[-1]
    assert not merge.commands and any("MPD" in note for note in merge.notes)


def _probed_like() -> job_pb2.InputInfo:
    """Input facts as a caller would state them (not the job's own)."""
    return job_pb2.InputInfo(
        duration_seconds=5.0,
        streams=[
            job_pb2.StreamInfo(
                index=0, kind="video", codec="h264", width=160, height=90, frame_rate=30
            ),
            job_pb2.StreamInfo(index=1, kind="audio", codec="aac", channels=1, sample_rate=48000),
        ],
    )


# Requests Create refuses, each for a different check: the request's fields, the input
# policy, an unknown preset, a too long idempotency key, an origin id of nobody.
BAD_REQUESTS = [
    {"inputUrl": "file:///etc/passwd", "outputs": [{"type": "mp4"}]},
    {
        "inputUrl": "MEDIA/clip2s.mp4",
        "outputs": [
            {"type": "mp4", "video": [{"codec": "h264", "resolution": "99999p"}]},
            {"type": "jpg", "thumbnail": {"mode": "sprite", "intervalSeconds": -1}},
        ],
    },
    {"inputUrl": "MEDIA/clip2s.mp4", "outputs": []},
    {"inputUrl": "MEDIA/clip2s.mp4", "outputs": [{"preset": "no-such-preset"}]},
    {"inputUrl": "MEDIA/clip2s.mp4", "outputs": [{"type": "mp3"}], "idempotencyKey": "k" * 129},
    {"inputUrl": "MEDIA/clip2s.mp4", "outputs": [{"type": "mp3"}], "inputOriginId": "ori_x"},
]


def _filled(body: dict, media_root: Path) -> dict:
    return json.loads(json.dumps(body).replace("MEDIA/", f"file://{media_root}/"))


@pytest.mark.parametrize("body", BAD_REQUESTS)
def test_plan_refuses_what_create_refuses_over_connect_json(plan_cluster, body, media_root):
    cluster, server, _ = plan_cluster
    client = ConnectJsonClient(server.http_url, cluster.create_key("org_refused"))
    body = _filled(body, media_root)
    created_status, created = client.call("Create", body)
    planned_status, planned = client.call("PlanJob", {"request": body})
    assert created_status in (400, 404), created
    assert (planned_status, planned["code"]) == (created_status, created["code"])
    if created["code"] == "invalid_argument":
        assert violations_from_connect(planned) == violations_from_connect(created)
    assert planned["message"] == created["message"]


@pytest.mark.parametrize("body", BAD_REQUESTS)
def test_plan_refuses_what_create_refuses_over_grpc(plan_cluster, auth, body, media_root):
    _, server, _ = plan_cluster
    request = parse_document(_filled(body, media_root), job_service_pb2.CreateRequest)
    stub = server.job_stub()
    with pytest.raises(grpc.RpcError) as created:
        stub.Create(request, metadata=auth)
    with pytest.raises(grpc.RpcError) as planned:
        stub.PlanJob(job_service_pb2.PlanJobRequest(request=request), metadata=auth)
    assert planned.value.code() == created.value.code()
    assert planned.value.details() == created.value.details()
    if created.value.code() == grpc.StatusCode.INVALID_ARGUMENT:
        assert violations_from_grpc(planned.value) == violations_from_grpc(created.value)


def test_bad_input_facts_are_refused_by_field(plan_cluster, auth, media_root):
    _, server, _ = plan_cluster
    client = ConnectJsonClient(server.http_url, None, Authorization=dict(auth)["authorization"])
    body = {
        "request": {"inputUrl": f"file://{media_root}/clip2s.mp4", "outputs": [{"type": "mp3"}]},
        "input": {
            "durationSeconds": "NaN",
            "streams": [
                {"kind": "video", "width": 0, "height": 90, "frameRate": 5000},
                {"kind": "sound", "channels": 1000, "rotation": 45},
            ],
        },
    }
    status, answer = client.call("PlanJob", body)
    assert (status, answer["code"]) == (400, "invalid_argument")
    assert set(violations_from_connect(answer)) == {
        "input.duration_seconds",
        "input.streams[0]",
        "input.streams[0].frame_rate",
        "input.streams[1].kind",
        "input.streams[1].channels",
        "input.streams[1].rotation",
    }
    # Facts the job would fail on after probing are no refusal: the plan stops at the probe.
    body["input"] = {
        "durationSeconds": 2,
        "streams": [{"kind": "video", "codec": "h264", "width": 160, "height": 90}],
    }
    status, answer = client.call("PlanJob", body)
    assert status == 200, answer
    (probe,) = answer["tasks"]
    assert "INPUT_NO_AUDIO" in probe["notes"][-1]
    # The server still serves.
    body["input"] = {"durationSeconds": 2, "streams": [{"kind": "audio", "codec": "aac"}]}
    status, answer = client.call("PlanJob", body)
    assert status == 200, answer
    assert [t["kind"] for t in answer["tasks"]] == [
        "PLAN_TASK_KIND_PROBE",
        "PLAN_TASK_KIND_TRANSCODE",
    ]


def test_plan_needs_an_api_key(plan_cluster, media_root):
    _, server, _ = plan_cluster
    body = {
        "request": {"inputUrl": f"file://{media_root}/clip2s.mp4", "outputs": [{"type": "mp3"}]}
    }
    status, answer = ConnectJsonClient(server.http_url, None).call("PlanJob", body)
    assert (status, answer["code"]) == (401, "unauthenticated")
    status, answer = ConnectJsonClient(server.http_url, "kiln_sk_unknown").call("PlanJob", body)
    assert (status, answer["code"]) == (401, "unauthenticated")


def _row_counts(cluster) -> dict[str, int]:
    database = cluster.database_url.removeprefix("sqlite:///")
    with sqlite3.connect(database) as connection:
        return {
            table: connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in (
                "jobs",
                "outputs",
                "tasks",
                "job_events",
                "task_outbox",
                "webhook_deliveries",
            )
        }


def _stored(cluster) -> list[Path]:
    return sorted(cluster.storage_dir.rglob("*")) if cluster.storage_dir.exists() else []


def test_nothing_is_created_and_nothing_internal_is_shown(plan_cluster, media_root, clip5):
    cluster, server, records = plan_cluster
    key = cluster.create_key("org_only_plans")
    client = ConnectJsonClient(server.http_url, key)
    rows, stored, runs = _row_counts(cluster), _stored(cluster), set(records.iterdir())
    body = {
        "inputUrl": f"file://{clip5}",
        "outputs": [
            {"type": "hls", "video": [{"codec": "h264", "resolution": "240p"}]},
            {"type": "mp4", "video": [{"codec": "h264", "resolution": "160x90"}]},
            {"type": "gif", "thumbnail": {"width": 80}},
        ],
        "metadata": {"team": "plans"},
    }
    status, plan = client.call("PlanJob", {"request": body})
    assert status == 200, plan
    assert {t["kind"] for t in plan["tasks"]} >= {"PLAN_TASK_KIND_CHUNK", "PLAN_TASK_KIND_MERGE"}
    assert all(t.get("commands") or t.get("notes") for t in plan["tasks"])
    for bad in BAD_REQUESTS:
        assert client.call("PlanJob", {"request": _filled(bad, media_root)})[0] != 200

    assert _row_counts(cluster) == rows
    assert _stored(cluster) == stored
    assert set(records.iterdir()) == runs  # no FFmpeg ran
    assert client.call("List", {})[1].get("jobs", []) == []

    text = json.dumps(plan)
    for internal in (
        str(cluster.root),
        str(media_root),
        str(cluster.scratch_dir),
        str(cluster.storage_dir),
        "/tmp",
        "kiln-plan-",
        SIGNING_KEY,
        key,
        "127.0.0.1",
        socket.gethostname(),
    ):
        assert internal not in text, internal
    assert "{input}" in text and "{output}" in text and "{scratch}" in text
    assert set(plan["placeholders"]) >= {"{input}", "{output}", "{scratch}"}


def test_cli_plan_prints_tasks_and_arguments(plan_cluster, media_root, tmp_path):
    cluster, server, _ = plan_cluster
    env = cluster.env(KILN_URL=server.http_url, KILN_API_KEY=cluster.create_key("org_cli_plan"))
    spec = tmp_path / "job.yaml"
    spec.write_text(
        f"input_url: file://{media_root}/clip2s.mp4\n"
        "outputs:\n"
        "  - type: mp4\n"
        "    video: [{codec: h264, resolution: 240p}]\n"
        "  - type: hls\n"
        "    video: [{codec: h264, resolution: 240p}, {codec: h264, resolution: 160x90}]\n"
    )
    facts = tmp_path / "facts.json"
    facts.write_text(
        json.dumps(
            {
                "durationSeconds": 9,
                "streams": [
                    {
                        "index": 0,
                        "kind": "video",
                        "codec": "h264",
                        "width": 640,
                        "height": 360,
                        "frameRate": 25,
                    }
                ],
            }
        )
    )

    def kiln(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            kiln_command(*args), env=env, capture_output=True, text=True, timeout=60, check=False
        )

    shown = kiln("jobs", "plan", "--spec", str(spec))
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    # Without stated facts: the assumed 60 s input, chunked past this cluster's 3 s.
    assert lines[0] == "input     60s: video h264 1920x1080 30fps, audio aac"
    assert "  task 1  audio  output 0  after 0" in lines
    assert "  task 2  chunk  output 0  chunk 1/30 0s-2s  after 0" in lines
    assert "  task 32  merge  output 0  after " + ",".join(map(str, range(1, 32))) in lines
    # Each argument on its own line, the files under their placeholders.
    assert "    -i" in lines and "    {input}" in lines
    assert "    {output}/chunks/chunk_00000.mp4" in lines
    assert "    {output}/output.mp4" in lines
    # Printed as is: `-c:v:0` is neither markup nor the emoji `:v:`.
    assert "    -c:v:0" in lines and "    -c:v:1" in lines

    as_json = kiln("jobs", "plan", "--spec", str(spec), "--input-facts", str(facts), "--json")
    assert as_json.returncode == 0, as_json.stderr
    plan = json.loads(as_json.stdout)
    assert plan["input"]["durationSeconds"] == 9
    assert plan["outputs"][0]["chunked"] is True  # 9 s is past the 3 s threshold
    chunks = [t for t in plan["tasks"] if t["kind"] == "PLAN_TASK_KIND_CHUNK"]
    # 2 s chunks of the MP4; the HLS ones on whole 6 s segments.
    assert Counter(t.get("outputIndex", 0) for t in chunks) == {0: 5, 1: 2}

    spec.write_text(f"input_url: file://{media_root}/clip2s.mp4\noutputs: []\n")
    refused = kiln("jobs", "plan", "--spec", str(spec))
    assert refused.returncode == EXIT_API
    assert "outputs" in refused.stderr
