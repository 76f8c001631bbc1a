"""A real clip becomes a real MP4 through real server and worker processes, over both protocols."""

from __future__ import annotations

import threading
from pathlib import Path

import grpc
import pytest
from kiln.v1 import job_pb2, job_service_pb2

from tests.media_probe import ffprobe, streams
from tests.support import plain_http

from .connect_json import ConnectJsonClient
from .jobs import QC_JSON, media_files

ORDER = [
    "JOB_STATUS_PENDING",
    "JOB_STATUS_PROBING",
    "JOB_STATUS_PROCESSING",
    "JOB_STATUS_COMPLETED",
]


def mp4_request(media_root: Path, resolution: str) -> job_service_pb2.CreateRequest:
    return job_service_pb2.CreateRequest(
        input_url=f"file://{media_root / 'clip2s.mp4'}",
        outputs=[
            job_pb2.OutputSpec(
                type=job_pb2.OUTPUT_TYPE_MP4,
                video=[job_pb2.VideoVariant(codec=job_pb2.VIDEO_CODEC_H264, resolution=resolution)],
            )
        ],
    )


def check_event_stream(kinds_and_events: list[tuple[str, dict]]) -> dict:
    """The Watch contract, checked on events in Connect JSON shape; returns the final job."""
    kinds = [kind for kind, _ in kinds_and_events]
    assert kinds[0] == "snapshot"
    assert kinds[-1] == "completed"
    assert kinds.count("completed") == 1
    # The snapshot may already be past PENDING (a worker can be faster than the
    # watcher); from there every transition must chain and follow the order.
    statuses = [kinds_and_events[0][1]["job"]["status"]]
    progress = [kinds_and_events[0][1]["job"].get("progress", 0.0)]
    for kind, event in kinds_and_events[1:]:
        if kind == "statusChange":
            assert event["fromStatus"] == statuses[-1]
            statuses.append(event["toStatus"])
        elif kind == "progress":
            progress.append(event.get("progress", 0.0))
            if event.get("progress", 0.0) >= 100:
                assert statuses[-1] in ("JOB_STATUS_PROCESSING", "JOB_STATUS_COMPLETED")
    assert statuses == ORDER[ORDER.index(statuses[0]) :]
    assert progress == sorted(progress), f"progress went down: {progress}"
    assert max(progress) == 100.0
    assert all(value < 100 for value in progress[:-1])
    return kinds_and_events[-1][1]["job"]


def download_and_check(url: str, tmp_path: Path, width: int, height: int) -> None:
    target = tmp_path / "download.mp4"
    response = plain_http.get(url, timeout=30)
    assert response.status_code == 200
    target.write_bytes(response.content)
    info = ffprobe(target)
    (video,) = streams(info, "video")
    (audio,) = streams(info, "audio")
    assert video["codec_name"] == "h264"
    assert audio["codec_name"] == "aac"
    assert (video["width"], video["height"]) == (width, height)
    assert abs(float(info["format"]["duration"]) - 2.0) <= 0.1


def test_mp4_over_grpc(server, api_key, media_root, tmp_path):
    stub = server.job_stub()
    auth = (("authorization", f"Bearer {api_key}"),)
    job = stub.Create(mp4_request(media_root, "320x180"), metadata=auth).job
    assert job.status == job_pb2.JOB_STATUS_PENDING
    events = list(stub.Watch(job_service_pb2.WatchRequest(id=job.id), metadata=auth, timeout=60))
    as_json = []
    for event in events:
        kind = event.WhichOneof("event")
        if kind == "snapshot":
            body = {
                "job": {
                    "status": job_pb2.JobStatus.Name(event.snapshot.job.status),
                    "progress": event.snapshot.job.progress,
                }
            }
        elif kind == "status_change":
            kind, body = (
                "statusChange",
                {
                    "fromStatus": job_pb2.JobStatus.Name(event.status_change.from_status),
                    "toStatus": job_pb2.JobStatus.Name(event.status_change.to_status),
                },
            )
        elif kind == "progress":
            body = {"progress": event.progress.progress}
        else:
            body = {}
        as_json.append((kind, body))
    as_json[-1] = ("completed", {"job": {"status": "JOB_STATUS_COMPLETED"}})
    check_event_stream(as_json)
    final = events[-1].completed.job
    assert final.status == job_pb2.JOB_STATUS_COMPLETED
    assert final.progress == 100.0
    (output,) = final.outputs
    assert output.status == job_pb2.OUTPUT_STATUS_COMPLETED
    (file,) = media_files(output)
    assert (file.width, file.height, file.codec) == (320, 180, "h264")
    download_and_check(file.url, tmp_path, 320, 180)
    # Sequences of logged events increase by one with no gap.
    logged = [e.sequence for e in events if e.WhichOneof("event") not in ("snapshot", "heartbeat")]
    assert logged == list(range(logged[0], logged[0] + len(logged)))
    # The whole log, replayed from the start, holds every transition in order.
    replay = list(
        stub.Watch(
            job_service_pb2.WatchRequest(id=job.id, after_sequence=0), metadata=auth, timeout=30
        )
    )
    transitions = [
        (e.status_change.from_status, e.status_change.to_status)
        for e in replay
        if e.WhichOneof("event") == "status_change"
    ]
    names = [job_pb2.JobStatus.Name(transitions[0][0])] + [
        job_pb2.JobStatus.Name(to) for _, to in transitions
    ]
    assert names == ORDER
    assert [e.sequence for e in replay] == list(range(1, len(replay) + 1))
    assert replay[-1].WhichOneof("event") == "completed"


def test_mp4_over_connect_json(server, api_key, media_root, tmp_path):
    client = ConnectJsonClient(server.http_url, api_key)
    status, body = client.call(
        "Create",
        {
            "input_url": f"file://{media_root / 'clip2s.mp4'}",
            "outputs": [
                {
                    "type": "OUTPUT_TYPE_MP4",
                    "video": [{"codec": "VIDEO_CODEC_H264", "resolution": "240p"}],
                }
            ],
        },
    )
    assert status == 200, body
    job_id = body["job"]["id"]
    events = []
    for message in client.watch({"id": job_id}):
        kind = next(key for key in message if key not in ("sequence", "time"))
        events.append((kind, message[kind]))
    final = check_event_stream(events)
    assert final["status"] == "JOB_STATUS_COMPLETED"
    (file,) = [f for f in final["outputs"][0]["files"] if f["path"] != QC_JSON]
    # 640x360 at 240p keeps 16:9 with even dimensions.
    assert (file["width"], file["height"]) == (426, 240)
    download_and_check(file["url"], tmp_path, 426, 240)
    status, got = client.call("Get", {"id": job_id})
    assert status == 200 and got["job"]["status"] == "JOB_STATUS_COMPLETED"


def test_watch_resumes_without_gap_or_repeat(server, api_key, media_root):
    stub = server.job_stub()
    auth = (("authorization", f"Bearer {api_key}"),)
    job = stub.Create(mp4_request(media_root, "320x180"), metadata=auth).job
    # Read the log from its start, so the two connections together must cover it all.
    first = stub.Watch(
        job_service_pb2.WatchRequest(id=job.id, after_sequence=0), metadata=auth, timeout=60
    )
    seen = []
    for event in first:
        kind = event.WhichOneof("event")
        if kind not in ("snapshot", "heartbeat"):
            seen.append(event.sequence)
        if (
            kind == "status_change"
            and event.status_change.to_status == job_pb2.JOB_STATUS_PROCESSING
        ):
            break
    first.cancel()  # the client drops the connection mid-job
    resumed = list(
        stub.Watch(
            job_service_pb2.WatchRequest(id=job.id, after_sequence=seen[-1]),
            metadata=auth,
            timeout=60,
        )
    )
    kinds = [e.WhichOneof("event") for e in resumed]
    assert "snapshot" not in kinds
    assert seen and seen[0] == 1
    assert kinds[-1] == "completed"
    rest = [e.sequence for e in resumed if e.WhichOneof("event") != "heartbeat"]
    together = seen + rest
    assert together == list(range(1, len(together) + 1)), together
    # A resume after the end replays nothing and closes.
    assert (
        list(
            stub.Watch(
                job_service_pb2.WatchRequest(id=job.id, after_sequence=together[-1]),
                metadata=auth,
                timeout=10,
            )
        )
        == []
    )


def test_fresh_watch_of_terminal_job_is_snapshot_then_completed(server, api_key, media_root):
    stub = server.job_stub()
    auth = (("authorization", f"Bearer {api_key}"),)
    job = stub.Create(mp4_request(media_root, "320x180"), metadata=auth).job
    list(stub.Watch(job_service_pb2.WatchRequest(id=job.id), metadata=auth, timeout=60))
    again = list(stub.Watch(job_service_pb2.WatchRequest(id=job.id), metadata=auth, timeout=10))
    assert [e.WhichOneof("event") for e in again] == ["snapshot", "completed"]
    assert again[1].completed.job.outputs[0].files[0].url.startswith("http://")


def test_watch_sends_heartbeats_while_idle(server, api_key, media_root):
    """A job waiting for confirmation is idle: the stream carries heartbeats (1 s in tests).
    Counted once the job is waiting: before that it is probing (which took over 2 s on a
    loaded machine), and the job must still be waiting after them."""
    stub = server.job_stub()
    auth = (("authorization", f"Bearer {api_key}"),)
    request = mp4_request(media_root, "320x180")
    request.delayed_start = True
    job = stub.Create(request, metadata=auth).job
    waiting = job_pb2.JOB_STATUS_AWAITING_CONFIRMATION
    idle = False
    heartbeats = 0
    stream = stub.Watch(job_service_pb2.WatchRequest(id=job.id), metadata=auth, timeout=60)
    for event in stream:
        kind = event.WhichOneof("event")
        if kind == "snapshot" and event.snapshot.job.status == waiting:
            idle = True
        elif kind == "status_change":
            idle = event.status_change.to_status == waiting
        elif kind == "heartbeat" and idle:
            heartbeats += 1
            if heartbeats == 2:
                break
    stream.cancel()
    assert heartbeats == 2
    got = stub.Get(job_service_pb2.GetRequest(id=job.id), metadata=auth).job
    assert got.status == job_pb2.JOB_STATUS_AWAITING_CONFIRMATION
    assert got.estimated_cost.micros > 0


def test_list_newest_first_with_pages(server, media_root, cluster):
    key = cluster.create_key("org_lister")
    stub = server.job_stub()
    auth = (("authorization", f"Bearer {key}"),)
    request = mp4_request(media_root, "320x180")
    request.delayed_start = True  # keep the worker out of it
    ids = [stub.Create(request, metadata=auth).job.id for _ in range(3)]
    page = stub.List(job_service_pb2.ListRequest(page_size=2), metadata=auth)
    assert [j.id for j in page.jobs] == ids[::-1][:2]
    rest = stub.List(
        job_service_pb2.ListRequest(page_size=2, page_token=page.next_page_token), metadata=auth
    )
    assert [j.id for j in rest.jobs] == ids[:1]
    assert rest.next_page_token == ""
    filtered = stub.List(
        job_service_pb2.ListRequest(statuses=[job_pb2.JOB_STATUS_COMPLETED]), metadata=auth
    )
    assert filtered.jobs == []


def test_idempotency_key_returns_first_job(server, api_key, media_root):
    stub = server.job_stub()
    auth = (("authorization", f"Bearer {api_key}"), ("x-idempotency-key", "upload-42"))
    request = mp4_request(media_root, "320x180")
    request.delayed_start = True
    first = stub.Create(request, metadata=auth).job
    second = stub.Create(request, metadata=auth).job
    assert first.id == second.id


@pytest.mark.parametrize("protocol", ["grpc", "connect"])
def test_concurrent_watchers_all_complete(server, api_key, media_root, protocol):
    stub = server.job_stub()
    auth = (("authorization", f"Bearer {api_key}"),)
    job = stub.Create(mp4_request(media_root, "320x180"), metadata=auth).job
    results: list[int] = []

    def watch() -> None:
        if protocol == "grpc":
            events = list(
                stub.Watch(job_service_pb2.WatchRequest(id=job.id), metadata=auth, timeout=60)
            )
            results.append(events[-1].completed.job.status)
        else:
            client = ConnectJsonClient(server.http_url, api_key)
            events = list(client.watch({"id": job.id}))
            results.append(job_pb2.JobStatus.Value(events[-1]["completed"]["job"]["status"]))

    threads = [threading.Thread(target=watch) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)
    assert results == [job_pb2.JOB_STATUS_COMPLETED] * 5


def test_grpc_error_carries_code(server, api_key):
    stub = server.job_stub()
    with pytest.raises(grpc.RpcError) as caught:
        stub.Get(
            job_service_pb2.GetRequest(id="job_missing"),
            metadata=(("authorization", f"Bearer {api_key}"),),
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
