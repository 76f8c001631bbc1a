"""Requests as users write them: short enum names taken, typos refused by path, on a real server.

Bodies are pasted as a hosted service documents them (Transcodely's Create), then mangled
the ways people mangle them. Binary protobuf (gRPC, Connect proto) must not notice any of it.
"""

from __future__ import annotations

import base64
import copy

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2
from kiln.v1 import job_pb2, job_service_pb2
from kiln.v1.job_service_connect import JobServiceClientSync

from tests.support import plain_http
from tests.support.specs import transcodely_body

from .cluster import running_cluster
from .connect_json import ConnectJsonClient, ConnectStreamError


# Requests are parsed at the edge, before the store: one database kind is enough.
@pytest.fixture(scope="module")
def backend_url(sqlite_backend_url):
    return sqlite_backend_url


@pytest.fixture(scope="module")
def cluster(backend_url, tmp_path_factory, media_root):
    # No worker: the jobs made here only need to exist; they wait in PENDING, never encoded.
    root = tmp_path_factory.mktemp("cluster")
    with running_cluster(backend_url, root, media_root) as (cluster, _server):
        yield cluster


FULL_NAMES = {
    "mp4": "OUTPUT_TYPE_MP4",
    "webm": "OUTPUT_TYPE_WEBM",
    "hls": "OUTPUT_TYPE_HLS",
    "h264": "VIDEO_CODEC_H264",
    "vp9": "VIDEO_CODEC_VP9",
    "fmp4": "HLS_SEGMENT_FORMAT_FMP4",
}


def full_names_body(media_root) -> dict:
    body = transcodely_body(f"file://{media_root / 'clip2s.mp4'}")
    for output in body["outputs"]:
        if "type" in output:
            output["type"] = FULL_NAMES[output["type"]]
        for variant in output.get("video", []):
            variant["codec"] = FULL_NAMES[variant["codec"]]
            variant["quality"] = f"QUALITY_{variant['quality'].upper()}"
        if "hls" in output:
            output["hls"]["segment_format"] = FULL_NAMES[output["hls"]["segment_format"]]
    body["priority"] = "PRIORITY_STANDARD"
    return body


def violations_of(error: dict) -> dict[str, str]:
    """The google.rpc.BadRequest detail of a Connect JSON error, field path -> description."""
    (detail,) = [d for d in error.get("details", []) if d["type"] == "google.rpc.BadRequest"]
    raw = base64.b64decode(detail["value"] + "=" * (-len(detail["value"]) % 4))
    bad = error_details_pb2.BadRequest.FromString(raw)
    return {v.field: v.description for v in bad.field_violations}


def post(server, api_key: str, service: str, method: str, body: dict) -> httpx.Response:
    return plain_http.post(
        f"{server.http_url}/{service}/{method}",
        json=body,
        headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"},
        timeout=30,
    )


def job_ids(client: ConnectJsonClient) -> list[str]:
    body = client.call_service("kiln.v1.JobService", "List", {"page_size": 100})
    return [job["id"] for job in body.get("jobs", [])]


def test_documented_body_with_short_names_makes_the_same_job_as_full_names(
    server, api_key, media_root
):
    client = ConnectJsonClient(server.http_url, api_key)
    short = client.call_service(
        "kiln.v1.JobService", "Create", transcodely_body(f"file://{media_root / 'clip2s.mp4'}")
    )
    full = client.call_service("kiln.v1.JobService", "Create", full_names_body(media_root))
    short_job, full_job = short["job"], full["job"]
    assert short_job["id"] != full_job["id"]
    assert [o["spec"] for o in short_job["outputs"]] == [o["spec"] for o in full_job["outputs"]]
    assert short_job["outputs"][0]["spec"]["type"] == "OUTPUT_TYPE_MP4"
    assert short_job["outputs"][2]["spec"]["hls"] == {"segmentFormat": "HLS_SEGMENT_FORMAT_FMP4"}
    for key in ("priority", "metadata", "delayedStart", "inputUrl"):
        assert short_job.get(key) == full_job.get(key), key
    assert short_job["priority"] == "PRIORITY_STANDARD"


def test_misspelt_enum_value_names_the_field_value_and_allowed_values(server, api_key, media_root):
    client = ConnectJsonClient(server.http_url, api_key)
    before = job_ids(client)
    body = transcodely_body(f"file://{media_root / 'clip2s.mp4'}")
    body["outputs"][0]["type"] = "OUTPUT_TYPE_MP5"
    status, error = client.call("Create", body)
    assert (status, error["code"]) == (400, "invalid_argument"), error
    assert "outputs[0].type" in error["message"]
    assert '"OUTPUT_TYPE_MP5"' in error["message"]
    violations = violations_of(error)
    assert list(violations) == ["outputs[0].type"]
    assert "allowed values: mp4, webm, mov, mkv, hls, dash, cmaf" in violations["outputs[0].type"]
    assert job_ids(client) == before


def test_misspelt_field_name_is_refused_by_its_path(server, api_key, media_root):
    client = ConnectJsonClient(server.http_url, api_key)
    before = job_ids(client)
    body = transcodely_body(f"file://{media_root / 'clip2s.mp4'}")
    body["outputs"][2]["video"][1]["resolutoin"] = body["outputs"][2]["video"][1].pop("resolution")
    body["priorty"] = body.pop("priority")
    status, error = client.call("Create", body)
    assert (status, error["code"]) == (400, "invalid_argument"), error
    violations = violations_of(error)
    assert list(violations) == ["outputs[2].video[1].resolutoin", "priorty"]
    assert '(did you mean "resolution"?)' in violations["outputs[2].video[1].resolutoin"]
    assert '(did you mean "priority"?)' in violations["priorty"]
    assert job_ids(client) == before


def test_documented_fields_kiln_lacks_are_refused(server, api_key, media_root):
    # Its HLS example's segment length; kiln's field is duration_seconds.
    body = transcodely_body(f"file://{media_root / 'clip2s.mp4'}")
    body["outputs"][2].update(segments={"duration": 6})
    status, error = ConnectJsonClient(server.http_url, api_key).call("Create", body)
    assert (status, error["code"]) == (400, "invalid_argument"), error
    assert list(violations_of(error)) == ["outputs[2].segments.duration"]


def test_transcodely_origin_ids_must_name_an_origin_of_this_server(server, api_key, media_root):
    """Its documented ids are its own: malformed ones are refused by field, well-formed ids
    that no origin of the organization has are not found."""
    client = ConnectJsonClient(server.http_url, api_key)
    before = job_ids(client)
    body = transcodely_body(f"file://{media_root / 'clip2s.mp4'}")
    body["output_origin_id"] = "ori_x9y8z7w6v5"
    status, error = client.call("Create", body)
    assert (status, error["code"]) == (400, "invalid_argument"), error
    assert list(violations_of(error)) == ["output_origin_id"]

    body = transcodely_body("")
    del body["input_url"]
    body.update(input_origin_id="ori_input123", input_path="uploads/video.mp4")
    status, error = client.call("Create", body)
    assert (status, error["code"]) == (400, "invalid_argument"), error
    assert list(violations_of(error)) == ["input_origin_id"]

    body["input_origin_id"] = "ori_" + "0" * 26
    status, error = client.call("Create", body)
    assert (status, error["code"]) == (404, "not_found"), error
    assert "ori_" + "0" * 26 in error["message"]
    assert job_ids(client) == before


def test_other_services_are_strict_and_take_short_names(server, api_key):
    client = ConnectJsonClient(server.http_url, api_key)
    preset = client.call_service(
        "kiln.v1.PresetService",
        "CreatePreset",
        {
            "preset": {
                "name": "previews",
                "spec": {"type": "webm", "video": [{"codec": "vp9", "resolution": "240p"}]},
            }
        },
    )["preset"]
    assert preset["spec"]["type"] == "OUTPUT_TYPE_WEBM"
    assert preset["spec"]["video"][0]["codec"] == "VIDEO_CODEC_VP9"
    listed = client.call_service(
        "kiln.v1.JobService",
        "List",
        {"page_size": 5, "statuses": ["pending", "awaiting_confirmation"]},
    )
    assert all(job["status"] == "JOB_STATUS_PENDING" for job in listed["jobs"])
    status, error = client.call("List", {"statuses": ["done"]})
    assert (status, error["code"]) == (400, "invalid_argument"), error
    assert "statuses[0]" in violations_of(error)
    response = post(
        server, api_key, "kiln.v1.WebhookService", "UpdateWebhookSettings", {"url": "x"}
    )
    assert response.status_code == 400
    assert list(violations_of(response.json())) == ["url"]


def test_watch_over_the_streaming_json_content_type_is_strict(server, api_key):
    client = ConnectJsonClient(server.http_url, api_key)
    with pytest.raises(ConnectStreamError) as raised:
        list(client.watch({"id": "job_x", "after_sequnce": 3}, timeout=10))
    assert raised.value.code == "invalid_argument"
    assert "after_sequnce" in raised.value.error["message"]


def test_binary_clients_are_unaffected(server, api_key, media_root):
    request = job_service_pb2.CreateRequest(
        input_url=f"file://{media_root / 'clip2s.mp4'}",
        outputs=[
            job_pb2.OutputSpec(
                type=job_pb2.OUTPUT_TYPE_MP4,
                video=[job_pb2.VideoVariant(codec=job_pb2.VIDEO_CODEC_H264, resolution="240p")],
            )
        ],
        priority=job_pb2.PRIORITY_ECONOMY,
        delayed_start=True,
    )
    auth = {"authorization": f"Bearer {api_key}"}
    over_grpc = server.job_stub().Create(request, metadata=tuple(auth.items())).job
    with JobServiceClientSync(server.http_url) as client:  # application/proto
        over_connect = client.create(copy.deepcopy(request), headers=auth).job
    assert over_grpc.id != over_connect.id
    assert list(over_grpc.outputs[0].spec.SerializeToString()) == list(
        over_connect.outputs[0].spec.SerializeToString()
    )
    assert over_connect.priority == job_pb2.PRIORITY_ECONOMY
    # An unknown enum number still reaches validation over gRPC, as before.
    bad = job_service_pb2.CreateRequest(
        input_url=request.input_url, outputs=[job_pb2.OutputSpec(type=99)]
    )
    with pytest.raises(grpc.RpcError) as raised:
        server.job_stub().Create(bad, metadata=tuple(auth.items()))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
