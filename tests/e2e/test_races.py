"""Idempotent Create under real concurrency, against the real server on both databases."""

from __future__ import annotations

import asyncio
import json
import uuid

import grpc
import pytest
from kiln.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc

from .cluster import running_cluster
from .connect_json import ConnectJsonClient
from .jobs import mp4_output

CONCURRENT_CREATES = 50


@pytest.fixture
def lone_server(database_url, tmp_path, media_root):
    """A server of its own on a fresh database (no worker: the jobs only need to exist)."""
    with running_cluster(database_url, tmp_path, media_root) as running:
        yield running


def create_request(media_root, **fields) -> job_service_pb2.CreateRequest:
    return job_service_pb2.CreateRequest(
        input_url=f"file://{media_root / 'clip2s.mp4'}",
        outputs=[mp4_output()],
        delayed_start=True,  # nothing runs: the jobs stay as created
        metadata={"batch": "races"},
        **fields,
    )


async def create_concurrently(
    target: str, auth, requests: list[job_service_pb2.CreateRequest], header_key: str = ""
) -> list[job_pb2.Job | grpc.RpcError]:
    """Send every request at once over one grpc.aio channel; answers in request order."""
    metadata = (*auth, ("x-idempotency-key", header_key)) if header_key else auth
    async with grpc.aio.insecure_channel(target) as channel:
        stub = job_service_pb2_grpc.JobServiceStub(channel)
        await channel.channel_ready()

        async def one(request):
            try:
                return (await stub.Create(request, metadata=metadata, timeout=60)).job
            except grpc.aio.AioRpcError as error:
                return error

        return await asyncio.gather(*(one(request) for request in requests))


def listed_job_ids(server, api_key) -> list[str]:
    body = ConnectJsonClient(server.http_url, api_key).call_service(
        "kiln.v1.JobService", "List", {"page_size": 100}
    )
    return [job["id"] for job in body.get("jobs", [])]


@pytest.mark.parametrize("key_in", ["field", "header"])
async def test_concurrent_creates_with_one_key_make_one_job(lone_server, media_root, key_in):
    cluster, server = lone_server
    api_key = cluster.create_key("org_racers")
    auth = (("authorization", f"Bearer {api_key}"),)
    key = f"race-{uuid.uuid4().hex}"
    if key_in == "field":
        requests = [create_request(media_root, idempotency_key=key)] * CONCURRENT_CREATES
        answers = await create_concurrently(server.grpc_target, auth, requests)
    else:
        requests = [create_request(media_root)] * CONCURRENT_CREATES
        answers = await create_concurrently(server.grpc_target, auth, requests, header_key=key)

    failures = [answer for answer in answers if isinstance(answer, grpc.RpcError)]
    assert [(f.code(), f.details()) for f in failures] == []
    assert len(answers) == CONCURRENT_CREATES
    job_ids = {answer.id for answer in answers}
    assert len(job_ids) == 1, job_ids
    assert {answer.idempotency_key for answer in answers} == {key}
    assert listed_job_ids(server, api_key) == list(job_ids)
    assert "unexpected error" not in server.log.read_text()


async def test_concurrent_creates_with_distinct_keys_make_distinct_jobs(lone_server, media_root):
    """The conflict handling must not merge different keys: 20 keys, 20 jobs."""
    cluster, server = lone_server
    api_key = cluster.create_key("org_racers")
    auth = (("authorization", f"Bearer {api_key}"),)
    requests = [create_request(media_root, idempotency_key=f"k-{n}") for n in range(20)] * 2
    answers = await create_concurrently(server.grpc_target, auth, requests)
    assert not [answer for answer in answers if isinstance(answer, grpc.RpcError)]
    by_key: dict[str, set[str]] = {}
    for answer in answers:
        by_key.setdefault(answer.idempotency_key, set()).add(answer.id)
    assert all(len(ids) == 1 for ids in by_key.values()), by_key
    assert sorted(listed_job_ids(server, api_key)) == sorted(
        next(iter(ids)) for ids in by_key.values()
    )


def test_same_key_different_request_is_already_exists_over_grpc(server, api_key, media_root):
    auth = (("authorization", f"Bearer {api_key}"),)
    stub = server.job_stub()
    key = f"grpc-{uuid.uuid4().hex}"
    first = stub.Create(create_request(media_root, idempotency_key=key), metadata=auth).job

    # The same request again is the same job, whether the key comes as field or header.
    again = stub.Create(create_request(media_root, idempotency_key=key), metadata=auth).job
    assert again.id == first.id
    by_header = stub.Create(
        create_request(media_root), metadata=(*auth, ("x-idempotency-key", key))
    ).job
    assert by_header.id == first.id

    changed = create_request(media_root, idempotency_key=key)
    changed.metadata["batch"] = "something else"
    with pytest.raises(grpc.RpcError) as caught:
        stub.Create(changed, metadata=auth)
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert key in caught.value.details()
    assert first.id in caught.value.details()

    kept = stub.Get(job_service_pb2.GetRequest(id=first.id), metadata=auth).job
    assert dict(kept.metadata) == {"batch": "races"}
    assert kept.outputs[0].spec.video[0].resolution == "240p"


def test_same_key_different_request_is_already_exists_over_connect(server, api_key, media_root):
    client = ConnectJsonClient(server.http_url, api_key)
    key = f"connect-{uuid.uuid4().hex}"
    body = {
        "input_url": f"file://{media_root / 'clip2s.mp4'}",
        "outputs": [
            {
                "type": "OUTPUT_TYPE_MP4",
                "video": [{"codec": "VIDEO_CODEC_H264", "resolution": "240p"}],
            }
        ],
        "delayed_start": True,
        "idempotency_key": key,
    }
    status, created = client.call("Create", body)
    assert status == 200
    job_id = created["job"]["id"]

    # JSON field order and spelling do not matter: the fingerprint is of the decoded request.
    reordered = json.loads(json.dumps(dict(reversed(list(body.items())))))
    status, again = client.call("Create", reordered)
    assert (status, again["job"]["id"]) == (200, job_id)

    status, error = client.call("Create", {**body, "priority": "PRIORITY_PREMIUM"})
    assert status == 409
    assert error["code"] == "already_exists"
    assert f"'{key}'" in error["message"]
    assert job_id in error["message"]

    status, kept = client.call("Get", {"id": job_id})
    assert status == 200
    assert kept["job"].get("priority") == "PRIORITY_STANDARD"
