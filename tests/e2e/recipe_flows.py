"""Recipes through the running server: gRPC, Connect JSON and the CLI's spec file.

Collected in tests/e2e/test_outputs.py, which imports these tests so that they run on its
SQLite cluster (what recipes make does not depend on the database kind, and a cluster of
their own would add ~15 s of start-up to the suite).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import grpc
from kiln.v1 import job_pb2, job_service_pb2, preset_service_pb2, preset_service_pb2_grpc

from tests.media_probe import ffprobe, streams
from tests.support import plain_http
from tests.support.violations import violations_from_connect

from .cluster import kiln_command
from .connect_json import ConnectJsonClient
from .jobs import media_files


def recipe(name: str, type: job_pb2.OutputType | None = None, **params: str) -> job_pb2.OutputSpec:
    return job_pb2.OutputSpec(type=type, recipe=job_pb2.Recipe(name=name, params=params))


def video_md5(path: Path) -> str:
    return subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-map", "0:v", "-c", "copy", "-f", "md5", "-"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def download(file: job_pb2.OutputFile, folder: Path, name: str) -> Path:
    target = folder / name
    target.write_bytes(plain_http.get(file.url, timeout=30).content)
    return target


def test_several_recipes_and_a_recipe_preset_in_one_job(server, api_key, media_root, tmp_path):
    auth = (("authorization", f"Bearer {api_key}"),)
    presets = preset_service_pb2_grpc.PresetServiceStub(grpc.insecure_channel(server.grpc_target))
    small = recipe("compress", crf="35")
    small.audio.bitrate_kbps = 64  # an override of what the recipe makes
    preset = presets.CreatePreset(
        preset_service_pb2.CreatePresetRequest(
            preset=preset_service_pb2.Preset(name="small", spec=small)
        ),
        metadata=auth,
    ).preset
    source = media_root / "clip2s.mp4"
    request = job_service_pb2.CreateRequest(
        input_url=f"file://{source}",
        outputs=[
            recipe("web_ready"),
            recipe("extract_audio"),
            recipe("thumbnail", seekSeconds="1", width="160"),
            recipe("trim", job_pb2.OUTPUT_TYPE_MP4, start_seconds="0.5", end_seconds="1.5"),
            job_pb2.OutputSpec(preset=preset.id),
            job_pb2.OutputSpec(preset="recipe_proxy"),
        ],
    )
    stub = server.job_stub()
    job = stub.Create(request, metadata=auth).job
    # Output.spec is the expansion, the recipe kept on it.
    assert job.outputs[0].spec.type == job_pb2.OUTPUT_TYPE_MP4
    assert job.outputs[0].spec.video[0].codec == job_pb2.VIDEO_CODEC_H264
    assert job.outputs[4].spec.recipe.params["crf"] == "35"
    events = list(stub.Watch(job_service_pb2.WatchRequest(id=job.id), metadata=auth, timeout=120))
    job = events[-1].completed.job
    assert job.status == job_pb2.JOB_STATUS_COMPLETED, [o.error for o in job.outputs]
    web_ready, audio, thumbnail, trim, small_out, proxy = job.outputs

    (file,) = media_files(web_ready)
    copy = download(file, tmp_path, "web_ready.mp4")
    assert video_md5(copy) == video_md5(source)
    assert any("stream copy" in note for note in web_ready.notes)

    (file,) = media_files(audio)
    assert (file.mime_type, file.codec) == ("audio/mp4", "aac")
    assert any("stream copy" in note for note in audio.notes)

    (file,) = thumbnail.files
    assert (file.mime_type, file.width, file.height) == ("image/jpeg", 160, 90)

    (file,) = media_files(trim)
    assert abs(file.duration_seconds - 1.0) < 0.1

    (file,) = media_files(small_out)
    info = ffprobe(download(file, tmp_path, "small.mp4"))
    (sound,) = streams(info, "audio")
    assert int(sound["bit_rate"]) < 80_000  # the preset's 64 kbit/s override
    assert small_out.spec.video[0].crf == 35

    (file,) = media_files(proxy)
    assert (file.codec, file.height) == ("h264", 360)  # 720p asked, never upscaled
    assert job.actual_cost.micros == sum(o.actual_cost.micros for o in job.outputs)


def test_bad_recipes_are_refused_over_connect_json_naming_the_field(server, api_key, media_root):
    client = ConnectJsonClient(server.http_url, api_key)
    status, body = client.call(
        "Create",
        {
            "input_url": f"file://{media_root / 'clip2s.mp4'}",
            "outputs": [
                {"recipe": {"name": "sharpen"}},
                {"recipe": {"name": "compress", "params": {"crf": "99", "preset": "slow"}}},
            ],
        },
    )
    assert (status, body["code"]) == (400, "invalid_argument")
    violations = violations_from_connect(body)
    assert "unknown recipe 'sharpen'" in violations["outputs[0].recipe.name"]
    assert violations["outputs[1].recipe.params['crf']"] == "must be between 1 and 63"
    assert "no parameter 'preset'" in violations["outputs[1].recipe.params['preset']"]


def test_cli_spec_file_with_concat_recipes(cluster, server, api_key, media_root, tmp_path):
    clip = f"file://{media_root / 'clip2s.mp4'}"
    spec = tmp_path / "recipes.yaml"
    spec.write_text(
        f"input_url: {clip}\n"
        f"concat_input_urls: [{clip}]\n"
        "outputs:\n"
        "  - recipe: {name: concat, params: {resolution: 240p}}\n"
        "  - type: OUTPUT_TYPE_MP3\n"
        "    recipe: {name: concat}\n"
    )
    env = cluster.env(KILN_URL=server.http_url, KILN_API_KEY=api_key)
    created = subprocess.run(
        kiln_command("jobs", "create", "--spec", str(spec), "--wait", "--json"),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert created.returncode == 0, created.stderr
    job = json.loads(created.stdout.splitlines()[-1])["completed"]["job"]
    video, sound = (output["files"][0] for output in job["outputs"])
    assert (video["codec"], video["height"]) == ("h264", 240)
    assert abs(video["durationSeconds"] - 4.0) < 0.2
    assert sound["codec"] == "mp3" and abs(sound["durationSeconds"] - 4.0) < 0.2
