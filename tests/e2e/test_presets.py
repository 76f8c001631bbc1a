"""PresetService: system presets, saved presets per organization, and jobs that use them."""

from __future__ import annotations

import grpc
import pytest
from kiln.v1 import job_pb2, preset_service_pb2, preset_service_pb2_grpc

from server.domain.presets import SYSTEM_PRESETS

from .connect_json import ConnectJsonClient
from .jobs import create_job, media_files, run_to_end


def preset_stub(server) -> preset_service_pb2_grpc.PresetServiceStub:
    return preset_service_pb2_grpc.PresetServiceStub(grpc.insecure_channel(server.grpc_target))


def webm_preset(name: str = "web 240p") -> preset_service_pb2.Preset:
    return preset_service_pb2.Preset(
        name=name,
        description="small VP9 for previews",
        spec=job_pb2.OutputSpec(
            type=job_pb2.OUTPUT_TYPE_WEBM,
            video=[job_pb2.VideoVariant(codec=job_pb2.VIDEO_CODEC_VP9, resolution="240p")],
        ),
    )


def test_system_presets_are_listed_first_over_connect(server, api_key):
    client = ConnectJsonClient(server.http_url, api_key)
    response = client.call_service("kiln.v1.PresetService", "ListPresets", {"page_size": 100})
    slugs = [p["id"] for p in response["presets"] if p.get("system")]
    assert slugs == list(SYSTEM_PRESETS)
    got = client.call_service("kiln.v1.PresetService", "GetPreset", {"id": "hls_h264_ladder"})
    assert got["preset"]["spec"]["type"] == "OUTPUT_TYPE_HLS"
    assert len(got["preset"]["spec"]["video"]) == 4


def test_saved_preset_drives_a_job_and_stays_in_its_organization(
    server, api_key, other_api_key, media_root
):
    mine = (("authorization", f"Bearer {api_key}"),)
    theirs = (("authorization", f"Bearer {other_api_key}"),)
    stub = preset_stub(server)
    preset = stub.CreatePreset(
        preset_service_pb2.CreatePresetRequest(preset=webm_preset()), metadata=mine
    ).preset
    assert preset.id.startswith("pst_") and not preset.system
    assert preset.HasField("create_time")
    assert (
        stub.GetPreset(preset_service_pb2.GetPresetRequest(id=preset.id), metadata=mine).preset
        == preset
    )

    job = create_job(
        server,
        mine,
        f"file://{media_root / 'clip2s.mp4'}",
        outputs=[job_pb2.OutputSpec(preset=preset.id)],
    )
    final = run_to_end(server, mine, job.id)
    assert final.status == job_pb2.JOB_STATUS_COMPLETED, final.error
    (file,) = media_files(final.outputs[0])
    assert (file.codec, file.height, file.mime_type) == ("vp9", 240, "video/webm")
    assert final.outputs[0].spec.type == job_pb2.OUTPUT_TYPE_WEBM  # stored resolved

    with pytest.raises(grpc.RpcError) as caught:
        stub.GetPreset(preset_service_pb2.GetPresetRequest(id=preset.id), metadata=theirs)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as caught:
        create_job(
            server,
            theirs,
            f"file://{media_root / 'clip2s.mp4'}",
            outputs=[job_pb2.OutputSpec(preset=preset.id)],
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "unknown preset" in caught.value.details()

    stub.DeletePreset(preset_service_pb2.DeletePresetRequest(id=preset.id), metadata=mine)
    with pytest.raises(grpc.RpcError) as caught:
        stub.DeletePreset(preset_service_pb2.DeletePresetRequest(id=preset.id), metadata=mine)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    # The job that used it keeps its resolved spec.
    assert run_to_end(server, mine, job.id).outputs[0].spec.type == job_pb2.OUTPUT_TYPE_WEBM


def test_system_presets_are_read_only(server, api_key):
    with pytest.raises(grpc.RpcError) as caught:
        preset_stub(server).DeletePreset(
            preset_service_pb2.DeletePresetRequest(id="thumbnail"),
            metadata=(("authorization", f"Bearer {api_key}"),),
        )
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION


@pytest.mark.parametrize(
    ("preset", "field"),
    [
        (preset_service_pb2.Preset(spec=webm_preset().spec), "preset.name"),
        (preset_service_pb2.Preset(name="no spec"), "preset.spec"),
        (
            preset_service_pb2.Preset(name="loop", spec=job_pb2.OutputSpec(preset="thumbnail")),
            "preset.spec.preset",
        ),
        (
            preset_service_pb2.Preset(
                name="vp9 in mp4",
                spec=job_pb2.OutputSpec(
                    type=job_pb2.OUTPUT_TYPE_MP4,
                    video=[job_pb2.VideoVariant(codec=job_pb2.VIDEO_CODEC_VP9)],
                ),
            ),
            "preset.spec.video[0].codec",
        ),
    ],
)
def test_bad_presets_are_refused(server, api_key, preset, field):
    with pytest.raises(grpc.RpcError) as caught:
        preset_stub(server).CreatePreset(
            preset_service_pb2.CreatePresetRequest(preset=preset),
            metadata=(("authorization", f"Bearer {api_key}"),),
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in caught.value.details()


def test_list_pages_through_system_and_saved_presets(server, cluster):
    auth = (("authorization", f"Bearer {cluster.create_key('org_preset_pages')}"),)
    stub = preset_stub(server)
    saved = [
        stub.CreatePreset(
            preset_service_pb2.CreatePresetRequest(preset=webm_preset(f"p{i}")), metadata=auth
        ).preset.id
        for i in range(3)
    ]
    seen, token = [], ""
    while True:
        page = stub.ListPresets(
            preset_service_pb2.ListPresetsRequest(page_size=3, page_token=token), metadata=auth
        )
        assert len(page.presets) <= 3
        seen += [p.id for p in page.presets]
        token = page.next_page_token
        if not token:
            break
    assert seen == [*SYSTEM_PRESETS, *saved]


def test_presets_need_a_key(server):
    with pytest.raises(grpc.RpcError) as caught:
        preset_stub(server).ListPresets(preset_service_pb2.ListPresetsRequest())
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
