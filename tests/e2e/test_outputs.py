"""Several outputs of one job run as separate tasks; one failing output makes the job PARTIAL."""

from __future__ import annotations

import json

import m3u8
import pytest
from kiln.v1 import job_pb2, job_service_pb2

from tests.media_probe import ffprobe, streams
from tests.support import plain_http

from .connect_json import ConnectJsonClient

# The ETA end to end, on this module's cluster.
from .eta_flows import (  # noqa: F401
    test_a_running_job_tells_its_time_left_and_stops_when_done,
    test_queued_outputs_are_told_from_the_fleets_speed_once_it_is_known,
)
from .jobs import media_files, run_to_end

# Recipes end to end, on this module's cluster.
from .recipe_flows import (  # noqa: F401
    test_bad_recipes_are_refused_over_connect_json_naming_the_field,
    test_cli_spec_file_with_concat_recipes,
    test_several_recipes_and_a_recipe_preset_in_one_job,
)


# What FFmpeg produces does not depend on the database: one database kind is enough.
@pytest.fixture(scope="module")
def backend_url(sqlite_backend_url):
    return sqlite_backend_url


def variant(codec, resolution: str) -> job_pb2.VideoVariant:
    return job_pb2.VideoVariant(codec=codec, resolution=resolution)


def run(server, api_key, request) -> job_pb2.Job:
    auth = (("authorization", f"Bearer {api_key}"),)
    stub = server.job_stub()
    job = stub.Create(request, metadata=auth).job
    events = list(stub.Watch(job_service_pb2.WatchRequest(id=job.id), metadata=auth, timeout=120))
    return events[-1].completed.job


def test_mixed_outputs_each_checked_with_ffprobe(server, api_key, media_root, tmp_path):
    request = job_service_pb2.CreateRequest(
        input_url=f"file://{media_root / 'clip2s.mp4'}",
        outputs=[
            job_pb2.OutputSpec(
                type=job_pb2.OUTPUT_TYPE_WEBM, video=[variant(job_pb2.VIDEO_CODEC_VP9, "240p")]
            ),
            job_pb2.OutputSpec(
                type=job_pb2.OUTPUT_TYPE_MOV, video=[variant(job_pb2.VIDEO_CODEC_H265, "240p")]
            ),
            job_pb2.OutputSpec(type=job_pb2.OUTPUT_TYPE_M4A),
            job_pb2.OutputSpec(
                type=job_pb2.OUTPUT_TYPE_PNG,
                thumbnail=job_pb2.ThumbnailSpec(time_seconds=1, width=160),
            ),
        ],
    )
    job = run(server, api_key, request)
    assert job.status == job_pb2.JOB_STATUS_COMPLETED, job.error
    expected = [
        ("video/webm", "vp9", (426, 240), "opus"),
        ("video/quicktime", "hevc", (426, 240), "aac"),
        ("audio/mp4", "aac", (0, 0), "aac"),
        ("image/png", "png", (160, 90), None),
    ]
    for output, (mime, codec, size, audio_codec) in zip(job.outputs, expected, strict=True):
        assert output.status == job_pb2.OUTPUT_STATUS_COMPLETED
        (file,) = media_files(output)
        assert (file.mime_type, file.codec, (file.width, file.height)) == (mime, codec, size)
        target = tmp_path / file.path
        target.write_bytes(plain_http.get(file.url, timeout=30).content)
        info = ffprobe(target)
        audio = streams(info, "audio")
        assert [s["codec_name"] for s in audio] == ([audio_codec] if audio_codec else [])
        if audio_codec:
            assert abs(float(info["format"]["duration"]) - 2.0) <= 0.1
    # Job progress is the average of outputs and ends at 100; actual cost is their sum.
    assert job.progress == 100.0
    assert job.actual_cost.micros == sum(o.actual_cost.micros for o in job.outputs)


def test_one_failing_output_makes_the_job_partial(server, api_key, media_root):
    request = job_service_pb2.CreateRequest(
        input_url=f"file://{media_root / 'clip2s.mp4'}",
        outputs=[
            job_pb2.OutputSpec(
                type=job_pb2.OUTPUT_TYPE_MP4, video=[variant(job_pb2.VIDEO_CODEC_H264, "240p")]
            ),
            # Valid on its face, impossible for this input: the clip starts after its end.
            job_pb2.OutputSpec(
                type=job_pb2.OUTPUT_TYPE_MP4,
                video=[variant(job_pb2.VIDEO_CODEC_H264, "240p")],
                clip=job_pb2.ClipSpec(start_seconds=30),
            ),
        ],
    )
    job = run(server, api_key, request)
    assert job.status == job_pb2.JOB_STATUS_PARTIAL
    good, bad = job.outputs
    assert good.status == job_pb2.OUTPUT_STATUS_COMPLETED
    assert plain_http.get(good.files[0].url, timeout=30).status_code == 200
    assert bad.status == job_pb2.OUTPUT_STATUS_FAILED
    assert "after the end" in bad.error.message
    assert list(bad.files) == []
    assert job.progress < 100.0
    assert bad.actual_cost.micros == 0


def test_hls_ladder_through_the_service(server, api_key, media_root, tmp_path):
    """A 3-rung fMP4 HLS ladder: every file the master playlist references is downloadable."""
    request = job_service_pb2.CreateRequest(
        input_url=f"file://{media_root / 'clip2s.mp4'}",
        outputs=[
            job_pb2.OutputSpec(
                type=job_pb2.OUTPUT_TYPE_HLS,
                video=[
                    variant(job_pb2.VIDEO_CODEC_H264, "360p"),
                    variant(job_pb2.VIDEO_CODEC_H264, "240p"),
                    variant(job_pb2.VIDEO_CODEC_H264, "320x180"),
                ],
                segments=job_pb2.SegmentSpec(duration_seconds=1),
                hls=job_pb2.HlsSpec(segment_format=job_pb2.HLS_SEGMENT_FORMAT_FMP4),
            )
        ],
    )
    job = run(server, api_key, request)
    assert job.status == job_pb2.JOB_STATUS_COMPLETED, job.error
    files = {file.path: file for file in job.outputs[0].files}
    master = m3u8.loads(plain_http.get(files["master.m3u8"].url, timeout=30).text)
    assert sorted(p.stream_info.resolution for p in master.playlists) == [
        (320, 180),
        (426, 240),
        (640, 360),
    ]
    for playlist in master.playlists:
        assert playlist.stream_info.codecs.startswith("avc1.")
        assert playlist.stream_info.bandwidth >= playlist.stream_info.average_bandwidth > 0
        media_path = playlist.uri
        media = m3u8.loads(plain_http.get(files[media_path].url, timeout=30).text)
        folder = media_path.rsplit("/", 1)[0]
        segments = [f"{folder}/{segment.uri}" for segment in media.segments]
        assert segments and all(path in files for path in segments)
        assert plain_http.get(files[segments[0]].url, timeout=30).status_code == 200


def test_concat_of_two_inputs(server, api_key, media_root, tmp_path):
    request = job_service_pb2.CreateRequest(
        input_url=f"file://{media_root / 'clip2s.mp4'}",
        concat_input_urls=[f"file://{media_root / 'clip2s.mp4'}"],
        outputs=[
            job_pb2.OutputSpec(
                type=job_pb2.OUTPUT_TYPE_MP4, video=[variant(job_pb2.VIDEO_CODEC_H264, "240p")]
            )
        ],
    )
    job = run(server, api_key, request)
    assert job.status == job_pb2.JOB_STATUS_COMPLETED, job.error
    (file,) = media_files(job.outputs[0])
    assert abs(file.duration_seconds - 4.0) <= 0.1


def test_image_series_and_sprite_with_its_map_through_the_service(server, api_key, media_root):
    """INTERVAL, TIMESTAMPS and SPRITE are accepted at Create, built by the worker, described,
    and downloadable; the sprite's WebVTT map names the sheet and a tile per interval."""
    request = job_service_pb2.CreateRequest(
        input_url=f"file://{media_root / 'clip2s.mp4'}",
        outputs=[
            job_pb2.OutputSpec(
                type=job_pb2.OUTPUT_TYPE_JPG,
                thumbnail=job_pb2.ThumbnailSpec(
                    mode=job_pb2.THUMBNAIL_MODE_INTERVAL, interval_seconds=0.5, width=160
                ),
            ),
            job_pb2.OutputSpec(
                type=job_pb2.OUTPUT_TYPE_PNG,
                thumbnail=job_pb2.ThumbnailSpec(
                    mode=job_pb2.THUMBNAIL_MODE_TIMESTAMPS, timestamps_seconds=[1.5, 0.25]
                ),
            ),
            job_pb2.OutputSpec(
                type=job_pb2.OUTPUT_TYPE_WEBP,
                thumbnail=job_pb2.ThumbnailSpec(
                    mode=job_pb2.THUMBNAIL_MODE_SPRITE, interval_seconds=0.5, width=96, columns=2
                ),
            ),
        ],
    )
    job = run(server, api_key, request)
    assert job.status == job_pb2.JOB_STATUS_COMPLETED, job.error
    interval, timestamps, sprite = job.outputs
    assert [f.path for f in interval.files] == [f"thumb_000{n}.jpg" for n in range(1, 5)]
    assert {(f.width, f.mime_type) for f in interval.files} == {(160, "image/jpeg")}
    assert [f.path for f in timestamps.files] == ["thumb_0001.png", "thumb_0002.png"]
    by_path = {f.path: f for f in sprite.files}
    assert set(by_path) == {"sprite.webp", "sprite.vtt"}
    # Four tiles of 96 px, two per row: a 192 px wide sheet of two rows.
    assert by_path["sprite.webp"].width == 192
    vtt = plain_http.get(by_path["sprite.vtt"].url, timeout=10)
    assert vtt.status_code == 200
    lines = vtt.text.splitlines()
    assert lines[0] == "WEBVTT"
    tiles = [line for line in lines if line.startswith("sprite.webp#xywh=")]
    assert len(tiles) == 4
    assert tiles[1].startswith("sprite.webp#xywh=96,0,96,")
    image = plain_http.get(by_path["sprite.webp"].url, timeout=10)
    assert image.status_code == 200
    assert image.content[:4] == b"RIFF"


# Measured quality (docs/outputs.md): asked for over Connect JSON as the docs' curl
# does; figures on Get, quality.json in storage and among the files; an output that did
# not ask has neither.


def test_measured_outputs_report_figures_and_a_quality_file(cluster, server, api_key, media_root):
    client = ConnectJsonClient(server.http_url, api_key)
    h264 = "VIDEO_CODEC_H264"
    created = client.call_service(
        "kiln.v1.JobService",
        "Create",
        {
            "inputUrl": f"file://{media_root / 'clip2s.mp4'}",
            "outputs": [
                {
                    "type": "OUTPUT_TYPE_MP4",
                    "video": [{"codec": h264, "resolution": "240p"}],
                    "measureQuality": True,
                },
                {
                    "type": "OUTPUT_TYPE_HLS",
                    "video": [
                        {"codec": h264, "resolution": "360p"},
                        {"codec": h264, "resolution": "240p", "quality": "QUALITY_ECONOMY"},
                    ],
                    "segments": {"durationSeconds": 1},
                    "measureQuality": True,
                },
                {"type": "OUTPUT_TYPE_MP4", "video": [{"codec": h264, "resolution": "240p"}]},
            ],
        },
    )
    job_id = created["job"]["id"]
    auth = (("authorization", f"Bearer {api_key}"),)
    assert run_to_end(server, auth, job_id, timeout=120).status == job_pb2.JOB_STATUS_COMPLETED

    job = client.call_service("kiln.v1.JobService", "Get", {"id": job_id})["job"]
    progressive, ladder, unmeasured = job["outputs"]
    assert [(q["width"], q["height"]) for q in progressive["quality"]] == [(426, 240)]
    assert [(q.get("variantIndex", 0), q["width"]) for q in ladder["quality"]] == [
        (0, 640),
        (1, 426),
    ]
    for figure in progressive["quality"] + ladder["quality"]:
        assert 0.5 < figure["ssim"] <= 1.0, figure
        assert 20.0 < figure["psnrDb"] < 100.0, figure

    for output in (progressive, ladder):
        [listed] = [f for f in output["files"] if f["path"] == "quality.json"]
        assert listed["mimeType"] == "application/json"
        stored = cluster.storage_dir / job_id / output["id"] / "quality.json"
        written = json.loads(stored.read_text())
        assert [v["ssim"] for v in written["variants"]] == [q["ssim"] for q in output["quality"]]
        downloaded = plain_http.get(listed["url"], timeout=30)
        assert downloaded.status_code == 200
        assert downloaded.json() == written

    assert "quality" not in unmeasured
    assert [f["path"] for f in unmeasured["files"]] == ["output.mp4", "qc.json"]
    assert not (cluster.storage_dir / job_id / unmeasured["id"] / "quality.json").exists()


def test_measurement_of_an_output_without_video_is_refused_at_create(server, api_key, media_root):
    client = ConnectJsonClient(server.http_url, api_key)
    status, body = client.call(
        "Create",
        {
            "inputUrl": f"file://{media_root / 'clip2s.mp4'}",
            "outputs": [{"type": "OUTPUT_TYPE_M4A", "measureQuality": True}],
        },
    )
    assert status == 400
    assert body["code"] == "invalid_argument"
    assert "outputs[0].measure_quality: quality is measured for MP4" in body["message"]
