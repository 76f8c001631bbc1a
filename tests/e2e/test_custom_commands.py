"""Custom FFmpeg commands through the running server and worker.

Create refuses every hostile list with INVALID_ARGUMENT naming the argument; allowed lists
complete and make what they say (ffprobe of the stored file); and a hostile command that
never went through Create (its stored spec rewritten under the server) is refused by the
worker itself, which fails the output with UNSUPPORTED_COMMAND and writes nothing.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from kiln.v1 import job_pb2, job_service_pb2
from sqlalchemy import create_engine, text

from server.store.store import sync_url
from tests.custom_cases import ALLOWED, HOSTILE, IN, OUT
from tests.support.violations import violations_from_connect

from .connect_json import ConnectJsonClient
from .jobs import create_job, run_to_end


# The allowlist is checked at the edge and by the worker: one database kind is enough.
@pytest.fixture(scope="module")
def backend_url(sqlite_backend_url):
    return sqlite_backend_url


def clip_url(media_root: Path) -> str:
    return f"file://{media_root / 'clip2s.mp4'}"


def custom_output(args: list[str], kind: str = "MP4") -> job_pb2.OutputSpec:
    return job_pb2.OutputSpec(
        type=job_pb2.OutputType.Value(f"OUTPUT_TYPE_{kind}"),
        custom=job_pb2.CustomCommand(args=args),
    )


def test_every_hostile_command_is_refused_at_create(server, api_key, media_root):
    client = ConnectJsonClient(server.http_url, api_key)
    missed = []
    for name, args, index in HOSTILE:
        status, error = client.call(
            "Create",
            {
                "input_url": clip_url(media_root),
                "outputs": [{"type": "OUTPUT_TYPE_MP4", "custom": {"args": args}}],
            },
        )
        path = "outputs[0].custom.args" + ("" if index is None else f"[{index}]")
        if status != 400 or error.get("code") != "invalid_argument":
            missed.append((name, status, error.get("code")))
        elif path not in violations_from_connect(error):
            missed.append((name, path, violations_from_connect(error)))
    assert missed == []
    status, listed = client.call("List", {})
    assert status == 200 and not listed.get("jobs")


def ffprobe(path: Path) -> dict:
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", str(path)],
        capture_output=True,
        check=True,
        timeout=30,
    )
    return json.loads(result.stdout)


def test_allowed_commands_complete_and_make_what_they_say(cluster, server, api_key, media_root):
    auth = (("authorization", f"Bearer {api_key}"),)
    outputs = [custom_output(args, kind) for _, args, kind in ALLOWED]
    job = create_job(server, auth, clip_url(media_root), outputs=outputs)
    done = run_to_end(server, auth, job.id)
    assert done.status == job_pb2.JOB_STATUS_COMPLETED, done.error
    expected = [("h264", 320, "aac"), ("vp9", 160, "opus"), (None, 0, "mp3")]
    for output, (video_codec, width, audio_codec) in zip(done.outputs, expected, strict=True):
        (stored,) = (cluster.storage_dir / job.id / output.id).iterdir()
        probed = ffprobe(stored)
        streams = {s["codec_type"]: s for s in probed["streams"]}
        if video_codec is None:
            assert "video" not in streams
        else:
            assert (streams["video"]["codec_name"], streams["video"]["width"]) == (
                video_codec,
                width,
            )
        assert streams["audio"]["codec_name"] == audio_codec
        assert output.files[0].codec == (video_codec or audio_codec)
        assert output.files[0].duration_seconds > 0.5
    # The webm command keeps one second of the input (-ss 0.5 … -t 1).
    (webm,) = (cluster.storage_dir / job.id / done.outputs[1].id).iterdir()
    assert float(ffprobe(webm)["format"]["duration"]) < 1.2


def test_worker_refuses_a_command_that_never_went_through_create(
    cluster, server, api_key, media_root, tmp_path
):
    auth = (("authorization", f"Bearer {api_key}"),)
    job = create_job(
        server,
        auth,
        clip_url(media_root),
        outputs=[custom_output(["-i", IN, "-c:v", "libx264", OUT])],
        delayed_start=True,
    )
    stub = server.job_stub()
    deadline = time.monotonic() + 30
    while stub.Get(job_service_pb2.GetRequest(id=job.id), metadata=auth).job.status != (
        job_pb2.JOB_STATUS_AWAITING_CONFIRMATION
    ):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    # Forged behind Create's back: a second input and an output outside the scratch folder.
    escaped = tmp_path / "escaped.mp4"
    forged = custom_output(["-i", IN, "-i", "/etc/passwd", "-c:v", "libx264", str(escaped)])
    engine = create_engine(sync_url(cluster.database_url))
    try:
        with engine.begin() as connection:
            connection.execute(
                text("UPDATE outputs SET spec = :spec WHERE job_id = :job"),
                {"spec": forged.SerializeToString(), "job": job.id},
            )
    finally:
        engine.dispose()
    stub.Confirm(job_service_pb2.ConfirmRequest(id=job.id), metadata=auth)
    done = run_to_end(server, auth, job.id)
    assert done.status == job_pb2.JOB_STATUS_FAILED
    (output,) = done.outputs
    assert output.status == job_pb2.OUTPUT_STATUS_FAILED
    assert output.error.code == "UNSUPPORTED_COMMAND"
    assert "custom command refused: argument 2" in output.error.message
    assert not escaped.exists()
    assert not list(tmp_path.iterdir())
