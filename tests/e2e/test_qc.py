"""The quality-control report on every output, through a running server and a real worker.

Sources made here (4 s, 320x180 at 15 fps, a tone): one with 2 s of black, one with a frame
held for 2.4 s, one with 3 s of digital silence; the clean 2 s clip of the session. Every job is
created at once and followed to its end once for the module. Each defect raises exactly
its own check (as a warning: the source has it too, which is what a black fade in a source
must give), every other check passes; a clean source passes every check on a progressive
file, an MPEG-TS HLS ladder, a DASH ladder and an audio-only file. The QC verdicts a worker
reports are not believed by the server (tests/e2e/test_forged_reports.py: a truncated output
and QC_POLICY_FAIL's QC_FAILED).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import grpc
import pytest
from kiln.v1 import job_pb2, job_service_pb2

from tests.support.violations import violations_from_grpc

from .cluster import kiln_command
from .jobs import create_job, mp4_output, run_to_end

V = job_pb2.QcVerdict
H264 = job_pb2.VIDEO_CODEC_H264
VIDEO_CHECKS = ["duration", "decode", "black", "frozen", "silence", "start_drift", "end_drift",
                "loudness", "true_peak"]  # fmt: skip
AUDIO_CHECKS = ["duration", "decode", "silence", "loudness", "true_peak"]


@pytest.fixture(scope="module")
def backend_url(sqlite_backend_url):
    """What FFmpeg measures does not depend on the database."""
    return sqlite_backend_url


@pytest.fixture(scope="module")
def auth(api_key):
    return (("authorization", f"Bearer {api_key}"),)


def make_source(path: Path, video_filter: str, audio_filter: str) -> Path:
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=15:duration=6",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=4",
         "-vf", video_filter, "-af", audio_filter, "-t", "4",
         "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac",
         str(path)],
        check=True,
    )  # fmt: skip
    return path


DEFECTS = {
    # 1.0 to 3.0 s painted black (31 frames at 15 fps: 2.07 s).
    "black": ("drawbox=c=black:t=fill:enable='between(t,1,3)'", "anull"),
    # Frame 15 (1.0 s) held for 36 more frames (2.4 s), then the clip goes on.
    "frozen": ("loop=loop=36:size=1:start=15,setpts=N/15/TB", "anull"),
    # 1.0 to 4.0 s at zero volume.
    "silence": ("null", "volume=enable='between(t,1,4)':volume=0"),
}


def clean_outputs() -> list[job_pb2.OutputSpec]:
    def ladder(kind: job_pb2.OutputType) -> job_pb2.OutputSpec:
        return job_pb2.OutputSpec(
            type=kind,
            video=[
                job_pb2.VideoVariant(codec=H264, resolution="160x90"),
                job_pb2.VideoVariant(codec=H264, resolution="128x72"),
            ],
            segments=job_pb2.SegmentSpec(duration_seconds=1),
        )

    return [
        mp4_output("160x90"),
        ladder(job_pb2.OUTPUT_TYPE_HLS),
        ladder(job_pb2.OUTPUT_TYPE_DASH),
        job_pb2.OutputSpec(type=job_pb2.OUTPUT_TYPE_M4A),
    ]


@pytest.fixture(scope="module")
def finished(server, auth, media_root) -> dict[str, job_pb2.Job]:
    """Every job of the module, created together and followed to its end."""
    inputs = {"clean": media_root / "clip2s.mp4"}
    for name, (video, audio) in DEFECTS.items():
        inputs[name] = make_source(media_root / f"qc-{name}.mp4", video, audio)
    jobs = {
        name: create_job(
            server,
            auth,
            f"file://{path}",
            outputs=clean_outputs() if name == "clean" else [mp4_output("160x90")],
        )
        for name, path in inputs.items()
    }
    return {name: run_to_end(server, auth, job.id, timeout=240) for name, job in jobs.items()}


def checks_of(output: job_pb2.Output) -> dict[str, job_pb2.QcCheck]:
    return {check.name: check for check in output.qc.checks}


def test_a_clean_source_passes_every_check_on_every_kind_of_output(finished, cluster):
    job = finished["clean"]
    assert job.status == job_pb2.JOB_STATUS_COMPLETED, job.error
    assert job.qc_policy == job_pb2.QC_POLICY_REPORT  # unset means REPORT
    for output in job.outputs:
        expected = AUDIO_CHECKS if output.spec.type == job_pb2.OUTPUT_TYPE_M4A else VIDEO_CHECKS
        checks = checks_of(output)
        assert list(checks) == expected, output.spec.type
        failing = {
            name: (c.value, c.detail)
            for name, c in checks.items()
            if c.verdict != V.QC_VERDICT_PASS
        }
        assert failing == {}, output.spec.type
        assert output.qc.verdict == V.QC_VERDICT_PASS
        assert abs(checks["duration"].value - 2.0) < 0.1
        assert checks["duration"].threshold == 1.5
        assert checks["decode"].value == 0
        # The tone plays throughout: a real loudness, and no silence.
        assert -30 < checks["loudness"].value < -10
        assert checks["silence"].value == 0
        # qc.json among the files, saying what the API says.
        assert "qc.json" in [f.path for f in output.files]
        stored = json.loads((cluster.storage_dir / job.id / output.id / "qc.json").read_text())
        assert stored["verdict"] == "pass"
        assert [c["name"] for c in stored["checks"]] == expected


@pytest.mark.parametrize("defect", sorted(DEFECTS))
def test_each_defect_raises_exactly_its_check(finished, defect):
    job = finished[defect]
    assert job.status == job_pb2.JOB_STATUS_COMPLETED, job.error
    [output] = job.outputs
    checks = checks_of(output)
    assert list(checks) == VIDEO_CHECKS
    raised = {name for name, check in checks.items() if check.verdict != V.QC_VERDICT_PASS}
    assert raised == {defect}, {n: (c.value, c.detail) for n, c in checks.items()}
    check = checks[defect]
    least = 3.0 if defect == "silence" else 2.0
    assert least - 0.1 <= check.value <= least + 0.5, check
    assert check.threshold == 2.0
    # The source has it too (it was read back on the finding): a warning, not a failure.
    assert check.source_value >= check.value - 0.5
    assert check.verdict == V.QC_VERDICT_WARN
    assert output.qc.verdict == V.QC_VERDICT_WARN
    assert output.status == job_pb2.OUTPUT_STATUS_COMPLETED


def test_kiln_jobs_get_shows_a_qc_line_per_output(finished, cluster, server, api_key):
    env = cluster.env(KILN_URL=server.http_url, KILN_API_KEY=api_key)

    def kiln(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            kiln_command(*args), check=False, env=env, capture_output=True, text=True, timeout=60
        )

    shown = kiln("jobs", "get", finished["black"].id)
    assert shown.returncode == 0, shown.stderr
    assert "qc warn: warn black 2." in shown.stdout
    assert "(threshold 2)" in shown.stdout
    clean = kiln("jobs", "get", finished["clean"].id)
    assert clean.stdout.count("qc pass\n") == 4, clean.stdout


def test_an_unknown_qc_policy_is_refused_naming_the_field(server, auth, media_root):
    stub = server.job_stub()
    before = len(stub.List(job_service_pb2.ListRequest(page_size=100), metadata=auth).jobs)
    request = job_service_pb2.CreateRequest(
        input_url=f"file://{media_root / 'clip2s.mp4'}", outputs=[mp4_output()], qc_policy=7
    )
    with pytest.raises(grpc.RpcError) as caught:
        stub.Create(request, metadata=auth)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations_from_grpc(caught.value) == {
        "qc_policy": "unknown qc_policy 7: REPORT or FAIL"
    }
    # Nothing was written, and the server still serves.
    after = stub.List(job_service_pb2.ListRequest(page_size=100), metadata=auth).jobs
    assert len(after) == before
