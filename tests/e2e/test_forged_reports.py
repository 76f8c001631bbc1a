"""A worker holding the token is still not trusted: the server checks every result it reports.

The test plays the worker against a real server process (token set, no worker running):
forged results are refused with INVALID_ARGUMENT, the task goes back to the queue, the job
is unaffected and later completes from honest results, and no other job changes.
"""

from __future__ import annotations

import math

import grpc
import pytest
from kiln.v1 import job_pb2, job_service_pb2
from kiln.worker.v1 import worker_service_pb2 as wpb
from kiln.worker.v1 import worker_service_pb2_grpc

from tests.conftest import create_postgres_database, drop_postgres_database
from tests.support.played_worker import AUTH, TOKEN, PlayedWorker
from tests.support.qc_reports import QC_JSON, QC_JSON_SIZE, measured_qc, qc_file

from .cluster import Cluster, running_cluster
from .jobs import create_job, mp4_output

CLIP_SECONDS = 2.0


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def lone(request, tmp_path_factory, media_root):
    root = tmp_path_factory.mktemp("forged")
    if request.param == "sqlite":
        url = f"sqlite:///{root / 'kiln.db'}"
    else:
        request.getfixturevalue("postgres_available")
        url = create_postgres_database()
    settings = dict(KILN_WORKER_TOKEN=TOKEN, KILN_MAX_TASK_ATTEMPTS="20")
    try:
        with running_cluster(url, root, media_root, settings=settings) as running:
            yield running
    finally:
        if request.param == "postgres":
            drop_postgres_database(url)


def probe_info() -> job_pb2.InputInfo:
    return job_pb2.InputInfo(
        container="mov,mp4,m4a,3gp,3g2,mj2",
        duration_seconds=CLIP_SECONDS,
        size_bytes=100_000,
        bitrate=400_000,
        streams=[
            job_pb2.StreamInfo(index=0, kind="video", codec="h264", width=640, height=360,
                               frame_rate=30.0, is_default=True),
            job_pb2.StreamInfo(index=1, kind="audio", codec="aac", channels=1,
                               sample_rate=48000, is_default=True),
        ],
    )  # fmt: skip


def store_file(cluster, job_id: str, output_id: str, name: str, size: int) -> None:
    path = cluster.storage_dir / job_id / output_id / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0" * size)


def store_output(cluster, job_id: str, output_id: str, name: str, size: int) -> None:
    """The output's media file and its qc.json, as a worker stores them."""
    store_file(cluster, job_id, output_id, name, size)
    store_file(cluster, job_id, output_id, QC_JSON, QC_JSON_SIZE)


def transcode(name: str, size: int, seconds: float = CLIP_SECONDS) -> wpb.TranscodeResult:
    return wpb.TranscodeResult(
        files=[job_pb2.OutputFile(path=name, size_bytes=size, mime_type="video/mp4"), qc_file()],
        encoded_seconds=seconds,
        qc=measured_qc(seconds),
    )


def get(server, auth, job_id: str) -> job_pb2.Job:
    return server.job_stub().Get(job_service_pb2.GetRequest(id=job_id), metadata=auth).job


def run_honestly(cluster, server, worker: PlayedWorker, auth, clip) -> job_pb2.Job:
    job = create_job(server, auth, clip)
    probe = worker.claim()
    assert probe.job_id == job.id
    worker.complete(probe, input_info=probe_info())
    task = worker.claim()
    store_output(cluster, job.id, task.output_id, "output.mp4", 4096)
    worker.complete(task, transcode=transcode("output.mp4", 4096))
    done = get(server, auth, job.id)
    assert done.status == job_pb2.JOB_STATUS_COMPLETED
    return done


def test_forged_results_are_refused_and_the_job_still_completes(lone, media_root):
    cluster, server = lone
    clip = f"file://{media_root / 'clip2s.mp4'}"
    worker = PlayedWorker(server)
    victim_auth = (("authorization", f"Bearer {cluster.create_key('org_victim')}"),)
    victim = run_honestly(cluster, server, worker, victim_auth, clip)
    victim_output = victim.outputs[0]

    auth = (("authorization", f"Bearer {cluster.create_key('org_attacker')}"),)
    job = create_job(server, auth, clip, outputs=[mp4_output("240p"), mp4_output("144x144")])

    # Probe results out of physical bounds, and made-up error codes.
    probe = worker.claim()
    assert probe.kind == wpb.TASK_KIND_PROBE and probe.job_id == job.id
    bad_duration = probe_info()
    bad_duration.duration_seconds = math.nan
    assert "duration" in worker.refused(probe, input_info=bad_duration)
    probe = worker.claim()
    huge = probe_info()
    huge.streams[0].width = 100_000
    assert "8192" in worker.refused(probe, input_info=huge)
    probe = worker.claim()
    invented = job_pb2.JobError(code="INPUT_INVENTED", message="forged rejection")
    assert "INPUT_INVENTED" in worker.refused(probe, error=invented)
    assert get(server, auth, job.id).status == job_pb2.JOB_STATUS_PROBING

    probe = worker.claim()
    worker.complete(probe, input_info=probe_info())
    assert get(server, auth, job.id).status == job_pb2.JOB_STATUS_PROCESSING

    first, second = worker.claim(), worker.claim()
    assert {first.output_id, second.output_id} == {o.id for o in job.outputs}
    assert first.output_prefix == f"{job.id}/{first.output_id}"

    # Another job's file, reached by a path outside the output's prefix (right size, too).
    stolen = f"../../{victim.id}/{victim_output.id}/output.mp4"
    assert "not a plain relative path" in worker.refused(first, transcode=transcode(stolen, 4096))
    first = worker.claim()
    absolute = f"/{victim.id}/{victim_output.id}/output.mp4"
    assert "not a plain relative path" in worker.refused(first, transcode=transcode(absolute, 4096))
    # A file that is not in storage at all.
    first = worker.claim()
    assert "not in the output's storage" in worker.refused(
        first, transcode=transcode("output.mp4", 4096)
    )
    # A file whose size is not what storage holds.
    store_output(cluster, job.id, first.output_id, "output.mp4", 2048)
    first = worker.claim()
    assert "2048 bytes in storage" in worker.refused(first, transcode=transcode("output.mp4", 4096))
    # Encoded seconds that would zero or inflate the cost.
    for seconds in (0.001, 1e9, math.inf):
        first = worker.claim()
        assert "encoded_seconds" in worker.refused(
            first, transcode=transcode("output.mp4", 2048, seconds=seconds)
        )
    # Nothing of that reached the job: still running, no output failed.
    running = get(server, auth, job.id)
    assert running.status == job_pb2.JOB_STATUS_PROCESSING
    assert all(o.status != job_pb2.OUTPUT_STATUS_FAILED for o in running.outputs)

    # The other output completes while the forged one is retried; then honest results win.
    store_output(cluster, job.id, second.output_id, "output.mp4", 1024)
    worker.complete(second, transcode=transcode("output.mp4", 1024))
    first = worker.claim()
    worker.complete(first, transcode=transcode("output.mp4", 2048))

    done = get(server, auth, job.id)
    assert done.status == job_pb2.JOB_STATUS_COMPLETED
    for output in done.outputs:
        assert [f.path for f in output.files] == ["output.mp4", QC_JSON]
        for file in output.files:
            assert f"/files/{job.id}/{output.id}/{file.path}?" in file.url
    # Price from honest durations only.
    assert done.actual_cost.micros > 0
    # The victim's job and files are untouched.
    again = get(server, victim_auth, victim.id)
    assert again.status == job_pb2.JOB_STATUS_COMPLETED
    assert again.outputs[0].files[0].size_bytes == 4096
    assert (
        cluster.storage_dir / victim.id / victim_output.id / "output.mp4"
    ).stat().st_size == 4096


def test_worker_service_is_not_on_the_public_port(lone):
    _, server = lone
    public = worker_service_pb2_grpc.WorkerServiceStub(grpc.insecure_channel(server.grpc_target))
    with pytest.raises(grpc.RpcError) as caught:
        public.ClaimTask(wpb.ClaimTaskRequest(worker_id="rogue", wait_seconds=0.1), metadata=AUTH)
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_progress_reports_out_of_range_are_refused(lone, media_root):
    cluster, server = lone
    auth = (("authorization", f"Bearer {cluster.create_key('org_progress')}"),)
    job = create_job(server, auth, f"file://{media_root / 'clip2s.mp4'}")
    worker = PlayedWorker(server)
    probe = worker.claim()
    assert probe.job_id == job.id
    for progress, stage in ((math.nan, 0), (-1.0, 0), (101.0, 0), (50.0, 999)):
        with pytest.raises(grpc.RpcError) as caught:
            worker.stub.ReportProgress(
                wpb.ReportProgressRequest(
                    task_id=probe.id, lease_token=probe.lease_token, progress=progress, stage=stage
                ),
                metadata=AUTH,
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    worker.complete(probe, error=job_pb2.JobError(code="INPUT_CORRUPT", message="cut short"))
    assert get(server, auth, job.id).status == job_pb2.JOB_STATUS_REJECTED


def test_server_refuses_to_start_an_open_worker_listener_off_loopback(tmp_path, media_root):
    cluster = Cluster(f"sqlite:///{tmp_path / 'kiln.db'}", tmp_path, media_root)
    result = cluster.run_to_exit("serve", KILN_WORKER_HOST="0.0.0.0", KILN_WORKER_TOKEN="")
    assert result.returncode == 2
    assert "KILN_WORKER_TOKEN" in result.stderr


def test_forged_quality_figures_are_refused(lone, media_root):
    cluster, server = lone
    auth = (("authorization", f"Bearer {cluster.create_key('org_quality')}"),)
    measured = mp4_output("240p")
    measured.measure_quality = True
    job = create_job(server, auth, f"file://{media_root / 'clip2s.mp4'}", outputs=[measured])
    worker = PlayedWorker(server)
    probe = worker.claim()
    assert probe.job_id == job.id
    worker.complete(probe, input_info=probe_info())
    task = worker.claim()
    store_output(cluster, job.id, task.output_id, "output.mp4", 4096)
    store_file(cluster, job.id, task.output_id, "quality.json", 100)

    def result(ssim: float, psnr_db: float) -> wpb.TranscodeResult:
        report = transcode("output.mp4", 4096)
        report.files.add(path="quality.json", size_bytes=100, mime_type="application/json")
        report.quality.add(variant_index=0, width=426, height=240, ssim=ssim, psnr_db=psnr_db)
        return report

    assert "SSIM nan" in worker.refused(task, transcode=result(math.nan, 40.0))
    task = worker.claim()
    assert "SSIM 1.2 is not a number from 0 to 1" in worker.refused(
        task, transcode=result(1.2, 40.0)
    )
    task = worker.claim()
    assert "PSNR inf dB" in worker.refused(task, transcode=result(0.95, math.inf))
    task = worker.claim()
    # Asked for, so a result without figures is refused too.
    assert "no figures were reported" in worker.refused(
        task, transcode=transcode("output.mp4", 4096)
    )
    assert get(server, auth, job.id).status == job_pb2.JOB_STATUS_PROCESSING

    task = worker.claim()
    worker.complete(task, transcode=result(0.95, 38.5))
    done = get(server, auth, job.id)
    assert done.status == job_pb2.JOB_STATUS_COMPLETED
    [figure] = done.outputs[0].quality
    assert (figure.variant_index, figure.ssim, figure.psnr_db) == (0, 0.95, 38.5)


def test_forged_loudness_figures_are_refused(lone, media_root):
    cluster, server = lone
    auth = (("authorization", f"Bearer {cluster.create_key('org_loudness')}"),)
    normalized = job_pb2.OutputSpec(
        type=job_pb2.OUTPUT_TYPE_M4A,
        audio=job_pb2.AudioSpec(loudness=job_pb2.LoudnessSpec(preset="podcast")),
    )
    job = create_job(server, auth, f"file://{media_root / 'clip2s.mp4'}", outputs=[normalized])
    worker = PlayedWorker(server)
    worker.complete(worker.claim(), input_info=probe_info())
    task = worker.claim()
    store_output(cluster, job.id, task.output_id, "output.m4a", 4096)

    def result(
        normalization: int = job_pb2.LOUDNESS_NORMALIZATION_LINEAR, **changes: float
    ) -> wpb.TranscodeResult:
        report = transcode("output.m4a", 4096)
        figures: dict[str, float] = dict(
            target_integrated_lufs=-16.0,
            target_true_peak_dbtp=-1.0,
            target_lra=8.0,
            input_integrated_lufs=-20.5,
            input_true_peak_dbtp=-3.0,
            input_lra=4.0,
            output_integrated_lufs=-16.1,
            output_true_peak_dbtp=-1.2,
            output_lra=3.9,
        )
        for name, value in {**figures, **changes}.items():
            setattr(report.loudness, name, value)
        report.loudness.normalization = normalization  # type: ignore[assignment]
        return report

    assert "output loudness integrated_lufs nan" in worker.refused(
        task, transcode=result(output_integrated_lufs=math.nan)
    )
    task = worker.claim()
    assert "input loudness lra 250.0 is not a number from 0 to 100 LU" in worker.refused(
        task, transcode=result(input_lra=250.0)
    )
    task = worker.claim()
    # Another target than the spec's preset.
    assert "is not the spec's" in worker.refused(task, transcode=result(target_lra=20.0))
    task = worker.claim()
    assert "normalization 0" in worker.refused(task, transcode=result(normalization=0))
    assert get(server, auth, job.id).status == job_pb2.JOB_STATUS_PROCESSING

    task = worker.claim()
    worker.complete(task, transcode=result())
    done = get(server, auth, job.id)
    assert done.status == job_pb2.JOB_STATUS_COMPLETED
    assert done.outputs[0].loudness.output_integrated_lufs == -16.1


def truncated_result() -> wpb.TranscodeResult:
    """An MP4 of the 2 s clip that ffprobe described as 1 s long, while the forged read-back
    claims the full 2 s and every verdict PASS."""
    result = transcode("output.mp4", 4096)
    result.files[0].duration_seconds = 1.0
    return result


def test_forged_qc_reports_are_refused(lone, media_root):
    cluster, server = lone
    auth = (("authorization", f"Bearer {cluster.create_key('org_qc_forged')}"),)
    job = create_job(server, auth, f"file://{media_root / 'clip2s.mp4'}")
    worker = PlayedWorker(server)
    worker.complete(worker.claim(), input_info=probe_info())
    task = worker.claim()
    store_output(cluster, job.id, task.output_id, "output.mp4", 4096)

    unreported = transcode("output.mp4", 4096)
    unreported.ClearField("qc")
    assert "must report its quality-control report" in worker.refused(task, transcode=unreported)
    task = worker.claim()
    not_a_number = transcode("output.mp4", 4096)
    not_a_number.qc.checks[0].value = math.nan
    assert "check 'duration': value nan" in worker.refused(task, transcode=not_a_number)
    task = worker.claim()
    invented = transcode("output.mp4", 4096)
    invented.qc.checks.add(name="vibes", value=1.0)
    assert "'vibes' is not a check kiln makes" in worker.refused(task, transcode=invented)
    task = worker.claim()
    without_file = transcode("output.mp4", 4096)
    del without_file.files[1]
    assert "qc.json is not among the reported files" in worker.refused(task, transcode=without_file)
    assert get(server, auth, job.id).status == job_pb2.JOB_STATUS_PROCESSING

    worker.complete(worker.claim(), transcode=transcode("output.mp4", 4096))
    done = get(server, auth, job.id)
    assert done.status == job_pb2.JOB_STATUS_COMPLETED
    assert done.outputs[0].qc.verdict == job_pb2.QC_VERDICT_PASS


@pytest.mark.parametrize("policy", [job_pb2.QC_POLICY_REPORT, job_pb2.QC_POLICY_FAIL])
def test_a_truncated_output_fails_the_duration_check_whatever_the_worker_says(
    lone, media_root, policy
):
    cluster, server = lone
    auth = (("authorization", f"Bearer {cluster.create_key('org_qc_truncated')}"),)
    clip = f"file://{media_root / 'clip2s.mp4'}"
    job = create_job(server, auth, clip, qc_policy=policy)
    worker = PlayedWorker(server)
    worker.complete(worker.claim(), input_info=probe_info())
    task = worker.claim()
    assert task.job_id == job.id
    store_output(cluster, job.id, task.output_id, "output.mp4", 4096)
    result = truncated_result()
    # 2.5 s of black claimed as passing: the server judges the value, not the verdict.
    result.qc.checks.add(name="black", value=2.5, verdict=job_pb2.QC_VERDICT_PASS)
    worker.complete(task, transcode=result)

    done = get(server, auth, job.id)
    [output] = done.outputs
    checks = {check.name: check for check in output.qc.checks}
    assert list(checks) == ["duration", "decode", "black"]
    assert checks["duration"].value == 1.0
    assert checks["duration"].threshold == 1.5  # 2 s less max(0.5 s, 2 %)
    assert "output.mp4 is 1 s as described" in checks["duration"].detail
    assert checks["duration"].verdict == job_pb2.QC_VERDICT_FAIL
    assert checks["black"].verdict == job_pb2.QC_VERDICT_FAIL
    assert checks["decode"].verdict == job_pb2.QC_VERDICT_PASS
    assert output.qc.verdict == job_pb2.QC_VERDICT_FAIL
    if policy == job_pb2.QC_POLICY_REPORT:
        assert done.qc_policy == job_pb2.QC_POLICY_REPORT
        assert done.status == job_pb2.JOB_STATUS_COMPLETED
        assert output.status == job_pb2.OUTPUT_STATUS_COMPLETED
        assert [f.path for f in output.files] == ["output.mp4", QC_JSON]
    else:
        assert done.qc_policy == job_pb2.QC_POLICY_FAIL
        assert done.status == job_pb2.JOB_STATUS_FAILED
        assert output.status == job_pb2.OUTPUT_STATUS_FAILED
        assert output.error.code == "QC_FAILED"
        assert output.error.message == (
            "quality control failed: duration (1 s, threshold 1.5), black (2.5 s, threshold 2)"
        )
        assert not output.files
