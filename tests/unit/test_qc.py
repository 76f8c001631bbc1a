"""Quality control without FFmpeg: the thresholds (common.qc), the read-back's log parser
(worker.media.qc_readback) and the server's judgement of a worker's report
(server.domain.qc_reports). The read-back itself runs in tests/e2e/test_qc.py."""

from __future__ import annotations

import pytest
from kiln.v1 import job_pb2
from kiln.worker.v1 import worker_service_pb2 as wpb

from common import qc
from server.domain.qc_reports import judged_report, qc_failure, qc_report_problems
from tests.support.qc_reports import measured_qc, qc_file
from worker.media.qc import Plan, measurements
from worker.media.qc_readback import (
    Findings,
    InputTiming,
    Reading,
    StreamTiming,
    outside,
    parse_readback_log,
    readback_command,
)

V = job_pb2.QcVerdict
MP4 = job_pb2.OutputSpec(type=job_pb2.OUTPUT_TYPE_MP4)
TWO_SECONDS = qc.Context(expected_seconds=2.0)


@pytest.mark.parametrize(
    ("name", "value", "source", "verdict"),
    [
        ("duration", 1.6, None, V.QC_VERDICT_PASS),
        ("duration", 1.4, None, V.QC_VERDICT_FAIL),
        ("decode", 1, None, V.QC_VERDICT_FAIL),
        ("black", 1.9, None, V.QC_VERDICT_PASS),
        ("black", 2.0, None, V.QC_VERDICT_FAIL),
        ("black", 2.0, 1.6, V.QC_VERDICT_WARN),  # the source has one about as long
        ("frozen", 3.0, 2.0, V.QC_VERDICT_FAIL),  # the source's is a second shorter
        ("silence", 3.0, 3.0, V.QC_VERDICT_WARN),
        ("start_drift", 0.05, None, V.QC_VERDICT_PASS),
        ("start_drift", 0.3, None, V.QC_VERDICT_WARN),
        ("start_drift", 0.6, None, V.QC_VERDICT_FAIL),
        ("start_drift", 0.6, 0.55, V.QC_VERDICT_WARN),
        ("end_drift", 1.5, None, V.QC_VERDICT_FAIL),
        ("true_peak", -1.5, None, V.QC_VERDICT_PASS),
        ("true_peak", 0.0, None, V.QC_VERDICT_WARN),
        ("true_peak", 1.5, None, V.QC_VERDICT_FAIL),
        ("true_peak", 1.5, 1.2, V.QC_VERDICT_WARN),
        ("loudness", -40.0, None, V.QC_VERDICT_PASS),  # no target: reported only
    ],
)
def test_thresholds(name, value, source, verdict):
    assert qc.judge(name, value, source, TWO_SECONDS)[1] == verdict


def test_loudness_is_judged_against_the_target_when_the_spec_normalizes():
    context = qc.Context(2.0, loudness_target=-16.0)
    assert qc.judge("loudness", -16.5, None, context) == (-16.0, V.QC_VERDICT_PASS)
    assert qc.judge("loudness", -17.5, None, context) == (-16.0, V.QC_VERDICT_WARN)
    assert qc.judge("loudness", -19.0, None, context) == (-16.0, V.QC_VERDICT_FAIL)


def test_the_report_verdict_is_the_worst_check_and_checks_keep_one_order():
    report = qc.report_of(
        [
            qc.judged_check("silence", 2.5, 2.5, TWO_SECONDS),
            qc.judged_check("duration", 2.0, None, TWO_SECONDS),
        ]
    )
    assert [c.name for c in report.checks] == ["duration", "silence"]
    assert report.verdict == V.QC_VERDICT_WARN


LOG = """\
[showinfo@v0 @ 0x1] [info] config in time_base: 1/15360, frame_rate: 30/1
[showinfo@v0 @ 0x1] [info] n:   0 pts:      0 pts_time:0.5     pos:  48 fmt:yuv420p
[ashowinfo@a0 @ 0x2] [info] n:0 pts:0 pts_time:0.48 pos:6729 fmt:dbl channels:1 rate:48000 nb_samples:1024
[blackdetect @ 0x3] [info] black_start:1 black_end:3.03333 black_duration:2.03333
[freezedetect @ 0x4] [info] lavfi.freezedetect.freeze_start: 1
[freezedetect @ 0x4] [info] lavfi.freezedetect.freeze_duration: 2.03333
[freezedetect @ 0x4] [info] lavfi.freezedetect.freeze_end: 3.03333
[freezedetect @ 0x4] [info] lavfi.freezedetect.freeze_start: 5.5
[silencedetect @ 0x5] [info] silence_start: 4.01
[silencedetect @ 0x5] [info] silence_end: 7.02 | silence_duration: 3.01
[h264 @ 0x6] [error] corrupted macroblock 3 2
[verbose]   Input stream #0:0 (video): 210 packets read (104897 bytes); 210 frames decoded;
[verbose]   Input stream #0:1 (audio): 376 packets read (45188 bytes); 375 frames decoded (384000 samples);
[ebur128@a0 @ 0x7] [info] Summary:

  Integrated loudness:
    I:         -22.1 LUFS
    LRA:         0.0 LU

  True peak:
    Peak:       -1.5 dBFS
"""


def test_the_log_parser_reads_every_figure():
    findings = parse_readback_log(LOG, [Reading("out.mp4", True, True)], fallback_frame_rate=25.0)
    timing = findings.timings[0]
    assert timing.video is not None and timing.audio is not None
    assert (timing.video.start, timing.video.end) == (0.5, 7.5)  # 210 frames at 30 fps
    assert (timing.audio.start, timing.audio.end) == (0.48, 8.48)  # 384000 samples at 48 kHz
    assert findings.black == [(1.0, 3.03333)]
    assert findings.frozen == [(1.0, 3.03333), (5.5, None)]  # the last runs to the end
    assert findings.silence == [(4.01, 7.02)]
    assert (findings.integrated_lufs, findings.true_peak_dbtp) == (-22.1, -1.5)
    assert findings.decode_errors == 1
    assert findings.first_error == "corrupted macroblock 3 2"
    # The frozen frames of a black segment are black, not frozen.
    assert outside(findings.frozen, findings.black, 7.5) == [(5.5, None)]


def test_one_run_names_each_reading():
    argv = readback_command(
        [Reading("/o/v0.m3u8", True, True), Reading("/o/v1.m3u8", False, False)]
    )
    graph = argv[argv.index("-filter_complex") + 1]
    assert graph.startswith("[0:v:0]blackdetect=")
    assert "[1:" not in graph  # the second rung is demuxed, not decoded
    assert argv[argv.index("1:v:0") - 1 : argv.index("1:v:0") + 3] == [
        "-map",
        "1:v:0",
        "-c:2",
        "copy",
    ]
    assert "ebur128@a0=peak=true" in graph
    assert argv[-3:] == ["-f", "null", "-"]
    assert "level+error" in argv


def result(report: job_pb2.QcReport, *, described: float = 0.0) -> wpb.TranscodeResult:
    media = job_pb2.OutputFile(path="output.mp4", size_bytes=10, duration_seconds=described)
    return wpb.TranscodeResult(files=[media, qc_file()], encoded_seconds=2.0, qc=report)


def test_the_server_judges_values_not_verdicts_and_measures_the_duration_itself():
    forged = measured_qc(2.0, black=3.0)
    judged = judged_report(result(forged, described=1.2), MP4, expected_seconds=2.0)
    checks = {c.name: c for c in judged.checks}
    assert checks["duration"].value == 1.2
    assert checks["duration"].verdict == V.QC_VERDICT_FAIL
    assert checks["black"].verdict == V.QC_VERDICT_FAIL
    assert judged.verdict == V.QC_VERDICT_FAIL
    assert qc_failure(judged).message == (
        "quality control failed: duration (1.2 s, threshold 1.5), black (3 s, threshold 2)"
    )


@pytest.mark.parametrize(
    ("report", "problem"),
    [
        (measured_qc(2.0, frozen=float("nan")), "'frozen': value nan"),
        (measured_qc(2.0, loudness=-500.0), "'loudness': value -500.0 is not a number"),
        (job_pb2.QcReport(checks=[job_pb2.QcCheck(name="decode")]), "lacks duration"),
        (measured_qc(2.0, sharpness=1.0), "'sharpness' is not a check kiln makes"),
    ],
)
def test_reports_that_are_no_measurement_are_refused(report, problem):
    problems = qc_report_problems(result(report), MP4, required=True)
    assert any(problem in p for p in problems), problems


def test_a_report_is_required_exactly_of_checked_outputs():
    unreported = wpb.TranscodeResult(files=[job_pb2.OutputFile(path="output.mp4")])
    assert qc_report_problems(unreported, MP4, required=True)
    assert qc_report_problems(unreported, MP4, required=False) == []  # a MERGE
    image = job_pb2.OutputSpec(type=job_pb2.OUTPUT_TYPE_JPG)
    assert qc_report_problems(unreported, image, required=True) == []
    assert qc_report_problems(result(measured_qc(2.0)), image, required=True) == [
        "a quality-control report was reported for an output that has none"
    ]


def test_a_truncated_rung_shortens_the_output_even_while_the_others_run_on():
    findings = Findings(
        timings={
            0: InputTiming(video=StreamTiming(0.0, 10.0)),
            1: InputTiming(video=StreamTiming(0.0, 7.0)),
            2: InputTiming(audio=StreamTiming(0.0, 10.02)),
        }
    )
    readings = [Reading("v0", True, False), Reading("v1", False, False), Reading("a", None, True)]
    plan = Plan(readings, renditions=[0, 1], detector=0, audio=2)
    value, detail = measurements(findings, plan)["duration"]
    assert value == 7.02
    assert "rendition 1 ends 3.00 s before the longest" in detail
    whole = Findings(timings={**findings.timings, 1: InputTiming(video=StreamTiming(0.0, 10.0))})
    assert measurements(whole, plan)["duration"][0] == 10.02
    # A rung that decoded nothing is an output of no length.
    empty = Findings(timings={0: findings.timings[0], 2: findings.timings[2]})
    assert measurements(empty, plan)["duration"] == (0.0, "rendition 1 decoded no video")


def test_a_demuxed_rung_is_as_long_as_its_packets_from_where_the_decoded_one_starts():
    log = LOG + "[verbose]   Input stream #1:0 (video): 150 packets read (12345 bytes);\n"
    readings = [Reading("v0", True, True), Reading("v1", False, False, frame_rate=30.0)]
    timing = parse_readback_log(log, readings, fallback_frame_rate=25.0).timings[1]
    assert timing.video is not None
    assert (timing.video.start, timing.video.end) == (0.5, 5.5)
