"""What the server accepts of a worker's quality-control report, and what it records. No I/O.

A worker measures; the server judges. Of a report it keeps the measured values (each checked
to be a measurement at all: a known check, once, finite, in range) and throws away the
verdicts and thresholds, judging every value again with common.qc, so a worker cannot pass an
output by writing "pass". The duration is the server's own: the source's length (or clip
window) comes from the probe the server recorded, and the output's length is the shortest the
worker reported anywhere, its read-back or the ffprobe description of a single-file output's
file. A worker that truncates a file and still reports the full length in both places is not
caught here: the server never decodes media (docs/security.md, "Worker results").
"""

from __future__ import annotations

import math

from kiln.v1 import job_pb2
from kiln.worker.v1 import worker_service_pb2

from common import qc
from common.output_types import SINGLE_FILE_MEDIA

V = job_pb2.QcVerdict
QC_FAILED = "QC_FAILED"
MAX_DETAIL = 300


def qc_report_problems(
    result: worker_service_pb2.TranscodeResult, spec: job_pb2.OutputSpec, *, required: bool
) -> list[str]:
    """A report exactly for a checked output (required of a TRANSCODE, which reads its output
    back; a MERGE has none), holding measurements only."""
    if not result.HasField("qc"):
        if required and qc.is_checked(spec):
            return ["a video or audio output must report its quality-control report"]
        return []
    if not qc.is_checked(spec):
        return ["a quality-control report was reported for an output that has none"]
    problems = []
    names = [check.name for check in result.qc.checks]
    for check in result.qc.checks[: len(qc.CHECK_NAMES) + 1]:
        where = f"quality-control check {check.name[:40]!r}"
        if check.name not in qc.CHECK_NAMES:
            problems.append(f"{where} is not a check kiln makes")
            continue
        low, high = qc.VALUE_RANGES[check.name]
        values = [("value", check.value)]
        if check.HasField("source_value"):
            values.append(("source_value", check.source_value))
        for label, value in values:
            if not (math.isfinite(value) and low <= value <= high):
                problems.append(
                    f"{where}: {label} {value!r} is not a number from {low:g} to {high:g}"
                )
        if len(check.detail) > MAX_DETAIL or any(ord(c) < 32 for c in check.detail):
            problems.append(f"{where}: the detail is too long or contains control characters")
    if len(names) != len(set(names)):
        problems.append("a quality-control check is reported twice")
    if missing := [name for name in qc.REQUIRED_CHECKS if name not in names]:
        problems.append(f"the quality-control report lacks {', '.join(missing)}")
    if all(file.path != qc.QC_FILE_NAME for file in result.files):
        problems.append(f"{qc.QC_FILE_NAME} is not among the reported files")
    return problems


def judged_report(
    result: worker_service_pb2.TranscodeResult,
    spec: job_pb2.OutputSpec,
    expected_seconds: float,
) -> job_pb2.QcReport:
    """The report the server records: the worker's values judged again, the duration the
    shortest anything reported (a result that passed qc_report_problems)."""
    context = qc.Context(expected_seconds, qc.loudness_target(spec))
    checks = []
    for check in result.qc.checks:
        value, detail = check.value, check.detail
        if check.name == "duration":
            value, detail = _duration(result, spec, value, detail)
        source = check.source_value if check.HasField("source_value") else None
        checks.append(qc.judged_check(check.name, value, source, context, detail))
    return qc.report_of(checks)


def _duration(
    result: worker_service_pb2.TranscodeResult,
    spec: job_pb2.OutputSpec,
    measured: float,
    detail: str,
) -> tuple[float, str]:
    if spec.type not in SINGLE_FILE_MEDIA:
        return measured, detail
    described = [f for f in result.files if f.duration_seconds > 0]
    shortest = min(described, key=lambda f: f.duration_seconds, default=None)
    if shortest is None or shortest.duration_seconds >= measured:
        return measured, detail
    seconds = round(shortest.duration_seconds, 3)
    return seconds, f"{shortest.path} is {seconds:g} s as described (read back: {measured:g} s)"


def qc_failure(report: job_pb2.QcReport) -> job_pb2.JobError:
    """The error of an output QC_POLICY_FAIL fails: every failed check, named."""
    named = [
        f"{check.name} ({check.value:g} {check.unit}"
        + (f", threshold {check.threshold:g}" if check.HasField("threshold") else "")
        + ")"
        for check in qc.failed_checks(report)
    ]
    return job_pb2.JobError(
        code=QC_FAILED,
        message="quality control failed: " + ", ".join(named),
        stage=job_pb2.JOB_STAGE_PACKAGING,
    )
