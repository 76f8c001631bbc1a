"""The server's checks of worker results (pure functions, no I/O)."""

from __future__ import annotations

import math

import pytest
from kiln.v1 import job_pb2
from kiln.worker.v1 import worker_service_pb2 as wpb

from server.domain import worker_reports as reports
from worker.media.errors import ALL_CODES, CANCELED

MP4 = job_pb2.OutputSpec(type=job_pb2.OUTPUT_TYPE_MP4)
JPG = job_pb2.OutputSpec(type=job_pb2.OUTPUT_TYPE_JPG)


@pytest.mark.parametrize(
    "path", ["output.mp4", "v0/seg_00001.m4s", "master.m3u8", "sprite-0.jpg", "a/b/c.ts"]
)
def test_paths_the_packagers_write_are_safe(path):
    assert reports.safe_relative_path(path)


@pytest.mark.parametrize(
    "path",
    ["", "/abs.mp4", "../x.mp4", "a/../../b", "a//b", "./a", "a/.", "a\\b", "a b", "a\x00b",
     "x" * 513, "é.mp4"],
)  # fmt: skip
def test_paths_leaving_or_aliasing_the_prefix_are_not(path):
    assert not reports.safe_relative_path(path)


def result(seconds: float, *files: tuple[str, int]) -> wpb.TranscodeResult:
    return wpb.TranscodeResult(
        files=[job_pb2.OutputFile(path=p, size_bytes=s) for p, s in files], encoded_seconds=seconds
    )


def test_encoded_seconds_must_match_the_output_within_tolerance():
    ok = result(10.0, ("output.mp4", 10))
    assert reports.transcode_problems(ok, MP4, expected_seconds=10.3) == []
    for seconds in (0.001, 8.0, 12.0, math.nan, math.inf, -1.0):
        assert reports.transcode_problems(result(seconds, ("o.mp4", 1)), MP4, expected_seconds=10)
    # Images have no floor (a thumbnail encodes one frame); concat jobs only a ceiling.
    assert reports.transcode_problems(result(0.03, ("t.jpg", 1)), JPG, expected_seconds=10) == []
    assert reports.transcode_problems(result(0.5, ("o.mp4", 1)), MP4, expected_seconds=None) == []


def test_files_are_counted_named_and_sized():
    assert reports.transcode_problems(result(1.0), MP4, expected_seconds=1.0) == [
        "no files were reported"
    ]
    twice = result(1.0, ("o.mp4", 1), ("o.mp4", 1))
    assert "reported twice" in reports.transcode_problems(twice, MP4, expected_seconds=1.0)[0]
    empty = result(1.0, ("o.mp4", 0))
    assert "size 0" in reports.transcode_problems(empty, MP4, expected_seconds=1.0)[0]
    stored = result(1.0, ("o.mp4", 5), ("p.mp4", 7))
    assert reports.stored_file_problems(stored, {"o.mp4": 5, "p.mp4": 7}) == []
    assert reports.stored_file_problems(stored, {"o.mp4": 5}) == [
        "file 'p.mp4' is not in the output's storage"
    ]
    assert "6 bytes in storage" in reports.stored_file_problems(stored, {"o.mp4": 6, "p.mp4": 7})[0]


def test_probe_results_within_physical_bounds():
    sane = job_pb2.InputInfo(
        duration_seconds=3.0,
        streams=[job_pb2.StreamInfo(kind="video", width=1920, height=1080, frame_rate=29.97)],
    )
    assert reports.input_info_problems(sane) == []
    for broken in (
        job_pb2.InputInfo(duration_seconds=math.nan),
        job_pb2.InputInfo(duration_seconds=-1),
        job_pb2.InputInfo(size_bytes=-5),
        job_pb2.InputInfo(streams=[job_pb2.StreamInfo(kind="video", width=9000, height=10)]),
        job_pb2.InputInfo(streams=[job_pb2.StreamInfo(kind="video", frame_rate=math.inf)]),
        job_pb2.InputInfo(streams=[job_pb2.StreamInfo(kind="video", rotation=45)]),
        job_pb2.InputInfo(streams=[job_pb2.StreamInfo(kind="audio", channels=1000)]),
        job_pb2.InputInfo(streams=[job_pb2.StreamInfo(kind="video")] * 65),
        job_pb2.InputInfo(container="mp4\x00"),
    ):
        assert reports.input_info_problems(broken), broken


def test_only_known_error_codes_and_plain_messages():
    assert reports.error_problems(job_pb2.JobError(code="ENCODE_FAILED", message="x")) == []
    assert reports.error_problems(job_pb2.JobError(code="INPUT_FORGED", message="x"))
    assert reports.error_problems(job_pb2.JobError(code="ENCODE_FAILED", message="\x1b[31m"))


def test_progress_reports_in_range():
    assert reports.progress_problem(wpb.ReportProgressRequest(progress=42.5)) is None
    for progress in (math.nan, -0.5, 100.5, math.inf):
        assert reports.progress_problem(wpb.ReportProgressRequest(progress=progress))
    assert reports.progress_problem(wpb.ReportProgressRequest(progress=1, stage=77))


def test_every_code_the_media_layer_raises_is_one_a_worker_may_report():
    # A code the server refuses turns a plain failure into a refused report and a rerun.
    for code in ALL_CODES - {CANCELED}:
        assert reports.error_problems(job_pb2.JobError(code=code, message="m")) == [], code


def test_loudness_figures_only_when_asked_and_within_range():
    asked = job_pb2.OutputSpec(
        type=job_pb2.OUTPUT_TYPE_M4A,
        audio=job_pb2.AudioSpec(loudness=job_pb2.LoudnessSpec(preset="ebu_r128", lra=10)),
    )
    figures = job_pb2.AudioLoudness(
        target_integrated_lufs=-23,
        target_true_peak_dbtp=-1,
        target_lra=10,
        input_integrated_lufs=-30,
        input_true_peak_dbtp=2.5,  # a clipped master peaks above full scale
        input_lra=12,
        output_integrated_lufs=-23.2,
        output_true_peak_dbtp=-1.1,
        output_lra=9,
        normalization=job_pb2.LOUDNESS_NORMALIZATION_DYNAMIC,
    )
    honest = result(2.0, ("output.m4a", 10))
    honest.loudness.CopyFrom(figures)
    assert reports.transcode_problems(honest, asked, expected_seconds=2.0) == []
    # Asked, but the audio was silent: no figures is fine.
    silent = result(2.0, ("output.m4a", 10))
    assert reports.transcode_problems(silent, asked, expected_seconds=2.0) == []
    plain = job_pb2.OutputSpec(type=job_pb2.OUTPUT_TYPE_M4A)
    assert "did not ask" in reports.transcode_problems(honest, plain, expected_seconds=2.0)[0]
    forged = wpb.TranscodeResult()
    forged.CopyFrom(honest)
    forged.loudness.output_true_peak_dbtp = math.inf
    forged.loudness.input_integrated_lufs = -120
    problems = reports.transcode_problems(forged, asked, expected_seconds=2.0)
    assert len(problems) == 2, problems
