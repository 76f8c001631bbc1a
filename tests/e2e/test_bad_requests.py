"""Bad input gets an exact code and a clear message; nothing is stored; the server keeps serving."""

from __future__ import annotations

import hashlib
import hmac
import time

import grpc
import pytest
from kiln.v1 import job_pb2, job_service_pb2

from tests.support import plain_http
from tests.support.violations import violations_from_connect, violations_from_grpc

from .cluster import SIGNING_KEY
from .connect_json import ConnectJsonClient, ConnectStreamError


# Requests are refused at the edge, before the store: one database kind is enough.
@pytest.fixture(scope="module")
def backend_url(sqlite_backend_url):
    return sqlite_backend_url


MP4 = {"type": "OUTPUT_TYPE_MP4", "video": [{"codec": "VIDEO_CODEC_H264", "resolution": "240p"}]}


def good_input(media_root) -> str:
    return f"file://{media_root / 'clip2s.mp4'}"


def job_count(server, api_key) -> int:
    client = ConnectJsonClient(server.http_url, api_key)
    status, body = client.call("List", {"page_size": 100})
    assert status == 200
    return len(body.get("jobs", []))


@pytest.mark.parametrize(
    ("request_body", "field", "fragment"),
    [
        ({"outputs": [MP4]}, "input_url", "required"),
        ({"outputs": []}, "outputs", "at least one"),
        ({"outputs": [MP4] * 11}, "outputs", "at most 10"),
        (
            {"outputs": [{"type": "OUTPUT_TYPE_MP4", "video": [{"resolution": "240p"}]}]},
            "outputs[0].video[0].codec",
            "required",
        ),
        (
            {"outputs": [{"type": "OUTPUT_TYPE_MP4", "video": [{"codec": "VIDEO_CODEC_VP9"}]}]},
            "outputs[0].video[0].codec",
            "cannot be used",
        ),
        (
            {
                "outputs": [
                    {
                        "type": "OUTPUT_TYPE_MP4",
                        "video": [{"codec": "VIDEO_CODEC_H264", "resolution": "999"}],
                    }
                ]
            },
            "outputs[0].video[0].resolution",
            "WxH",
        ),
        ({"input_url": "ftp://example.com/a.mp4", "outputs": [MP4]}, "input_url", "scheme"),
        ({"input_url": "file:///etc/passwd", "outputs": [MP4]}, "input_url", "outside"),
        (
            {"input_url": "http://127.0.0.1:9/a.mp4", "outputs": [MP4]},
            "input_url",
            "private or loopback",
        ),
        (
            {"input_url": "http://169.254.169.254/latest", "outputs": [MP4]},
            "input_url",
            "private or loopback",
        ),
        (
            {"metadata": {f"k{i}": "v" for i in range(21)}, "outputs": [MP4]},
            "metadata",
            "at most 20",
        ),
        (
            {"webhook_url": "http://127.0.0.1:9/hook", "outputs": [MP4]},
            "webhook_url",
            "private or loopback",
        ),
        ({"webhook_url": "ftp://hooks.example.com/x", "outputs": [MP4]}, "webhook_url", "http"),
        (
            {"webhook_url": "https://hooks.example.com/" + "h" * 2048, "outputs": [MP4]},
            "webhook_url",
            "at most 2048 characters",
        ),
        (
            {"input_url": "https://cdn.example.com/a.mp4?sig=" + "s" * 8192, "outputs": [MP4]},
            "input_url",
            "at most 8192 characters",
        ),
        (
            {
                "concat_input_urls": ["https://cdn.example.com/b.mp4?sig=" + "s" * 8192],
                "outputs": [MP4],
            },
            "concat_input_urls[0]",
            "at most 8192 characters",
        ),
    ],
)
def test_create_rejects_bad_request_over_connect(
    server, api_key, media_root, request_body, field, fragment
):
    body = {"input_url": good_input(media_root), **request_body}
    if "input_url" not in request_body and field == "input_url":
        body.pop("input_url")
    before = job_count(server, api_key)
    client = ConnectJsonClient(server.http_url, api_key)
    status, error = client.call("Create", body)
    assert status == 400
    assert error["code"] == "invalid_argument"
    violations = violations_from_connect(error)
    assert field in violations, violations
    assert fragment in violations[field]
    assert "Traceback" not in error["message"]
    assert job_count(server, api_key) == before


def test_unknown_codec_number_over_grpc_lists_every_violation(server, api_key, media_root):
    stub = server.job_stub()
    request = job_service_pb2.CreateRequest(
        input_url="ftp://nowhere/x.mp4",
        outputs=[
            job_pb2.OutputSpec(type=job_pb2.OUTPUT_TYPE_MP4, video=[job_pb2.VideoVariant(codec=99)])
        ],
    )
    with pytest.raises(grpc.RpcError) as caught:
        stub.Create(request, metadata=(("authorization", f"Bearer {api_key}"),))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    violations = violations_from_grpc(caught.value)
    assert violations["outputs[0].video[0].codec"] == "unknown codec 99"
    assert "input_url" in violations


@pytest.mark.parametrize(
    ("authorization", "code"),
    [
        (None, "unauthenticated"),
        ("Bearer kiln_sk_not-a-real-key", "unauthenticated"),
        ("Basic dXNlcjpwYXNz", "unauthenticated"),
    ],
)
def test_missing_or_wrong_key(server, authorization, code):
    headers = {"Authorization": authorization} if authorization else {}
    client = ConnectJsonClient(server.http_url, None, **headers)
    status, body = client.call("List", {})
    assert status == 401
    assert body["code"] == code


def test_wrong_key_over_grpc(server):
    with pytest.raises(grpc.RpcError) as caught:
        server.job_stub().List(
            job_service_pb2.ListRequest(), metadata=(("authorization", "Bearer kiln_sk_nope"),)
        )
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_organization_header_must_match_key(server, api_key):
    client = ConnectJsonClient(
        server.http_url, api_key, **{"X-Organization-ID": "org_someone_else"}
    )
    status, body = client.call("List", {})
    assert status == 403
    assert body["code"] == "permission_denied"


def test_other_organizations_job_is_not_found(server, api_key, other_api_key, media_root):
    mine = ConnectJsonClient(server.http_url, api_key)
    status, body = mine.call(
        "Create", {"input_url": good_input(media_root), "outputs": [MP4], "delayed_start": True}
    )
    assert status == 200
    job_id = body["job"]["id"]
    theirs = ConnectJsonClient(server.http_url, other_api_key)
    for method in ("Get", "Cancel"):
        status, error = theirs.call(method, {"id": job_id})
        assert (status, error["code"]) == (404, "not_found"), method
    with pytest.raises(ConnectStreamError) as caught:
        list(theirs.watch({"id": job_id}))
    assert caught.value.code == "not_found"
    # Untouched for its owner.
    status, body = mine.call("Get", {"id": job_id})
    assert status == 200
    assert body["job"]["status"] != "JOB_STATUS_CANCELED"


def test_cancel_of_terminal_job_is_failed_precondition(server, api_key, media_root):
    stub = server.job_stub()
    auth = (("authorization", f"Bearer {api_key}"),)
    request = job_service_pb2.CreateRequest(
        input_url=good_input(media_root),
        outputs=[
            job_pb2.OutputSpec(
                type=job_pb2.OUTPUT_TYPE_MP4,
                video=[job_pb2.VideoVariant(codec=job_pb2.VIDEO_CODEC_H264, resolution="320x180")],
            )
        ],
    )
    job = stub.Create(request, metadata=auth).job
    events = list(stub.Watch(job_service_pb2.WatchRequest(id=job.id), metadata=auth, timeout=60))
    assert events[-1].completed.job.status == job_pb2.JOB_STATUS_COMPLETED
    with pytest.raises(grpc.RpcError) as caught:
        stub.Cancel(job_service_pb2.CancelRequest(id=job.id), metadata=auth)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "COMPLETED" in caught.value.details()
    url = events[-1].completed.job.outputs[0].files[0].url
    assert plain_http.get(url, timeout=30).status_code == 200

    # A signed URL that was tampered with, or that expired, is refused.
    tampered = url.replace("sig=", "sig=0")
    assert plain_http.get(tampered, timeout=10).status_code == 403
    other_file = url.replace("output.mp4", "other.mp4")
    assert plain_http.get(other_file, timeout=10).status_code == 403
    key = f"{job.id}/{job.outputs[0].id}/output.mp4"
    expired_at = int(time.time()) - 5
    signature = hmac.new(
        SIGNING_KEY.encode(), f"{key}\n{expired_at}".encode(), hashlib.sha256
    ).hexdigest()
    expired = f"{server.http_url}/files/{key}?expires={expired_at}&sig={signature}"
    assert plain_http.get(expired, timeout=10).status_code == 403
    escape = f"{server.http_url}/files/../../etc/passwd?expires={expired_at + 100}&sig=x"
    assert plain_http.get(escape, timeout=10).status_code in (403, 404)


def test_watch_after_unknown_sequence_is_invalid(server, api_key, media_root):
    client = ConnectJsonClient(server.http_url, api_key)
    status, body = client.call(
        "Create", {"input_url": good_input(media_root), "outputs": [MP4], "delayed_start": True}
    )
    assert status == 200
    with pytest.raises(ConnectStreamError) as caught:
        list(client.watch({"id": body["job"]["id"], "after_sequence": 10_000}))
    assert caught.value.code == "invalid_argument"


def test_server_still_serving_after_bad_input(server, api_key):
    assert plain_http.get(f"{server.http_url}/healthz", timeout=5).status_code == 200
    client = ConnectJsonClient(server.http_url, api_key)
    status, _ = client.call("List", {})
    assert status == 200
    # Garbage bodies are refused cleanly too.
    response = plain_http.post(
        f"{server.http_url}/kiln.v1.JobService/Create",
        content=b"{not json",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {api_key}"},
        timeout=10,
    )
    assert response.status_code == 400
    assert "Traceback" not in response.text


def test_unknown_service_path_is_404(server):
    assert (
        plain_http.post(f"{server.http_url}/kiln.v1.Nope/Do", json={}, timeout=10).status_code
        == 404
    )
