"""Control characters in any request text are INVALID_ARGUMENT at the edge, on both protocols."""

from __future__ import annotations

import json
import socket

import grpc
import pytest
from kiln.v1 import job_pb2, job_service_pb2, preset_service_pb2, preset_service_pb2_grpc

from tests.support import plain_http
from tests.support.violations import violations_from_connect, violations_from_grpc

from .connect_json import ConnectJsonClient, ConnectStreamError
from .jobs import mp4_output


# Request text is screened at the edge, before the store: one database kind is enough.
@pytest.fixture(scope="module")
def backend_url(sqlite_backend_url):
    return sqlite_backend_url


MP4 = {"type": "OUTPUT_TYPE_MP4", "video": [{"codec": "VIDEO_CODEC_H264", "resolution": "240p"}]}


def good_body(media_root) -> dict:
    return {"input_url": f"file://{media_root / 'clip2s.mp4'}", "outputs": [MP4]}


def job_ids(server, api_key) -> list[str]:
    body = ConnectJsonClient(server.http_url, api_key).call_service(
        "kiln.v1.JobService", "List", {"page_size": 100}
    )
    return [job["id"] for job in body.get("jobs", [])]


@pytest.mark.parametrize(
    ("change", "path"),
    [
        (lambda b: b.update(input_url=b["input_url"] + "\x00"), "input_url"),
        (lambda b: b.update(idempotency_key="key\x00one"), "idempotency_key"),
        (lambda b: b.update(idempotency_key="two\nlines"), "idempotency_key"),
        (lambda b: b.update(metadata={"bad\x00key": "v"}), "metadata"),
        (lambda b: b.update(metadata={"team": "vid\x00eo"}), 'metadata["team"]'),
        (lambda b: b.update(outputs=[{"preset": "h264_720p_standard\x00"}]), "outputs[0].preset"),
        (lambda b: b.update(webhook_url="https://hooks.example.com/\r\nX: y"), "webhook_url"),
        (lambda b: b.update(concat_input_urls=["file:///\x1b"]), "concat_input_urls[0]"),
    ],
)
def test_create_over_connect(server, api_key, media_root, change, path):
    before = job_ids(server, api_key)
    body = good_body(media_root)
    change(body)
    status, error = ConnectJsonClient(server.http_url, api_key).call("Create", body)
    assert (status, error["code"]) == (400, "invalid_argument"), error
    violations = violations_from_connect(error)
    assert list(violations) == [path]
    assert "control characters" in violations[path]
    assert job_ids(server, api_key) == before


def test_create_over_grpc_lists_every_field(server, api_key, media_root):
    before = job_ids(server, api_key)
    request = job_service_pb2.CreateRequest(
        input_url=f"file://{media_root / 'clip2s.mp4'}\x00",
        outputs=[mp4_output(), job_pb2.OutputSpec(preset="thumbnail\x00")],
        metadata={"ok": "tab\tand\nnewline are fine in values", "k": "\x00"},
        idempotency_key="\x00",
    )
    with pytest.raises(grpc.RpcError) as caught:
        server.job_stub().Create(request, metadata=(("authorization", f"Bearer {api_key}"),))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert sorted(violations_from_grpc(caught.value)) == sorted(
        ["input_url", "outputs[1].preset", 'metadata["k"]', "idempotency_key"]
    )
    assert job_ids(server, api_key) == before


def test_metadata_values_may_hold_tab_and_line_breaks(server, api_key, media_root):
    note = "first line\r\nsecond\tline"
    body = {**good_body(media_root), "metadata": {"note": note}, "delayed_start": True}
    status, created = ConnectJsonClient(server.http_url, api_key).call("Create", body)
    assert status == 200, created
    assert created["job"]["metadata"] == {"note": note}


def test_header_idempotency_key_with_control_character(server, api_key, media_root):
    """h11 lets a tab through inside a header value: it must not become part of a key."""
    before = job_ids(server, api_key)
    client = ConnectJsonClient(server.http_url, api_key, **{"X-Idempotency-Key": "order\t42"})
    status, error = client.call("Create", good_body(media_root))
    assert (status, error["code"]) == (400, "invalid_argument")
    assert list(violations_from_connect(error)) == ["X-Idempotency-Key"]
    assert job_ids(server, api_key) == before


def test_header_organization_with_control_character(server, api_key):
    client = ConnectJsonClient(server.http_url, api_key, **{"X-Organization-ID": "org\talpha"})
    status, error = client.call("List", {})
    assert (status, error["code"]) == (400, "invalid_argument")
    assert list(violations_from_connect(error)) == ["X-Organization-ID"]


def test_nul_in_a_header_never_reaches_the_service(server, api_key, media_root):
    """HTTP/1.1 itself forbids NUL in headers; the server refuses the request whole."""
    before = job_ids(server, api_key)
    body = json.dumps(good_body(media_root)).encode()
    head = (
        "POST /kiln.v1.JobService/Create HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{server.http_port}\r\n"
        f"Authorization: Bearer {api_key}\r\n"
        "Content-Type: application/json\r\n"
        "X-Idempotency-Key: key\x00nul\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=10) as conn:
        conn.sendall(head.encode() + body)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert job_ids(server, api_key) == before


def test_id_of_unary_calls(server, api_key):
    client = ConnectJsonClient(server.http_url, api_key)
    for method in ("Get", "Cancel", "Confirm", "Retry", "DeleteOutputs"):
        status, error = client.call(method, {"id": "job_\x00"})
        assert (status, error["code"]) == (400, "invalid_argument"), method
        assert list(violations_from_connect(error)) == ["id"], method


def test_watch_id_over_connect_and_grpc(server, api_key):
    client = ConnectJsonClient(server.http_url, api_key)
    with pytest.raises(ConnectStreamError) as caught:
        list(client.watch({"id": "job_\x00", "after_sequence": 0}))
    assert caught.value.code == "invalid_argument"
    assert list(violations_from_connect(caught.value.error)) == ["id"]

    with pytest.raises(grpc.RpcError) as raised:
        list(
            server.job_stub().Watch(
                job_service_pb2.WatchRequest(id="job_\x01"),
                metadata=(("authorization", f"Bearer {api_key}"),),
                timeout=10,
            )
        )
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert list(violations_from_grpc(raised.value)) == ["id"]


def test_preset_service_fields(server, api_key):
    client = ConnectJsonClient(server.http_url, api_key)
    response = plain_http.post(
        f"{server.http_url}/kiln.v1.PresetService/CreatePreset",
        json={"preset": {"name": "pre\x00views", "description": "ok\n", "spec": MP4}},
        headers={**client.headers, "Content-Type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 400
    assert list(violations_from_connect(response.json())) == ["preset.name"]

    stub = preset_service_pb2_grpc.PresetServiceStub(grpc.insecure_channel(server.grpc_target))
    auth = (("authorization", f"Bearer {api_key}"),)
    spec = job_pb2.OutputSpec(
        type=job_pb2.OUTPUT_TYPE_MP4,
        video=[job_pb2.VideoVariant(codec=job_pb2.VIDEO_CODEC_H264, resolution="240p\x00")],
    )
    with pytest.raises(grpc.RpcError) as caught:
        stub.CreatePreset(
            preset_service_pb2.CreatePresetRequest(
                preset=preset_service_pb2.Preset(name="previews", spec=spec)
            ),
            metadata=auth,
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert list(violations_from_grpc(caught.value)) == ["preset.spec.video[0].resolution"]
    with pytest.raises(grpc.RpcError) as caught:
        stub.GetPreset(preset_service_pb2.GetPresetRequest(id="pst_\x00"), metadata=auth)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert list(violations_from_grpc(caught.value)) == ["id"]

    # A description is free text: line breaks are kept.
    saved = client.call_service(
        "kiln.v1.PresetService",
        "CreatePreset",
        {"preset": {"name": "previews", "description": "line 1\nline 2", "spec": MP4}},
    )
    assert saved["preset"]["description"] == "line 1\nline 2"


def test_server_still_serves_after_control_characters(server, api_key, media_root):
    client = ConnectJsonClient(server.http_url, api_key)
    status, _ = client.call("Create", {**good_body(media_root), "input_url": "\x00"})
    assert status == 400
    status, created = client.call("Create", {**good_body(media_root), "delayed_start": True})
    assert status == 200
    status, got = client.call("Get", {"id": created["job"]["id"]})
    assert (status, got["job"]["id"]) == (200, created["job"]["id"])
    assert "unexpected error" not in server.log.read_text()
