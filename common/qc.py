"""Quality control: which checks exist, their thresholds, and how a measurement becomes a verdict.

The worker measures (worker.media.qc); both sides judge with this module, so the verdicts in a
worker's qc.json and the ones the server records come from one table. The server does not take
a worker's verdicts: it keeps the measured values, judges them again here and works out the
duration itself (server.domain.qc_reports), so a worker cannot pass an output by saying so.

Thresholds (docs/qc.md says why each):
- duration: the output ends more than max(0.5 s, 2 %) before the source's clip window: fail.
- decode: any error while the output is read back: fail.
- black, frozen, silence: a segment of 2 s or more fails, unless the source has one at least
  as long (within 0.5 s): then it warns. A black fade in the source passes into every output
  and is no fault of the encode.
- start_drift, end_drift: audio and video starting (ending) more than 0.1 s apart warn
  (start; 0.2 s for the end, which a frame and an audio block round), more than 0.5 s
  (1 s) fail, unless the source's streams are apart by about as much (within 0.1 s): warn.
- loudness: integrated loudness; against the target (±1 LU passes, ±2 LU warns, beyond fails)
  when the spec normalizes, else reported only.
- true_peak: above -1 dBTP warns (streaming ceilings), above +1 dBTP fails (clipping in
  decoders) unless the source peaks as high (warn).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from kiln.v1 import job_pb2

from common.loudness import resolve_target, wants_loudness
from common.output_types import AUDIO_ONLY, VIDEO

V = job_pb2.QcVerdict

QC_FILE_NAME = "qc.json"
# The order checks are reported in (and the only names a report may carry).
CHECK_NAMES = (
    "duration",
    "decode",
    "black",
    "frozen",
    "silence",
    "start_drift",
    "end_drift",
    "loudness",
    "true_peak",
)
UNITS = {
    "duration": "s",
    "decode": "errors",
    "black": "s",
    "frozen": "s",
    "silence": "s",
    "start_drift": "s",
    "end_drift": "s",
    "loudness": "LUFS",
    "true_peak": "dBTP",
}
# Checks every report has; the others depend on the output's streams.
REQUIRED_CHECKS = ("duration", "decode")

SEGMENT_FAIL_SECONDS = 2.0
# A source segment this much shorter than the output's still counts as "the same thing".
SEGMENT_SOURCE_SLACK = 0.5
DURATION_SLACK_SECONDS = 0.5
DURATION_SLACK_FRACTION = 0.02
# (warn above, fail above) in seconds.
DRIFT_LIMITS = {"start_drift": (0.1, 0.5), "end_drift": (0.2, 1.0)}
DRIFT_SOURCE_SLACK = 0.1
TRUE_PEAK_WARN = -1.0
TRUE_PEAK_FAIL = 1.0
LOUDNESS_WARN_LU = 1.0
LOUDNESS_FAIL_LU = 2.0
# What silence (-inf) and other figures beyond any real measurement are reported as.
LOWEST_LEVEL = -99.0
# Any value beyond these is no measurement (the server refuses it).
VALUE_RANGES = {
    "duration": (0.0, 7 * 24 * 3600.0),
    "decode": (0.0, 1e9),
    "black": (0.0, 7 * 24 * 3600.0),
    "frozen": (0.0, 7 * 24 * 3600.0),
    "silence": (0.0, 7 * 24 * 3600.0),
    "start_drift": (0.0, 7 * 24 * 3600.0),
    "end_drift": (0.0, 7 * 24 * 3600.0),
    "loudness": (LOWEST_LEVEL, 30.0),
    "true_peak": (LOWEST_LEVEL, 30.0),
}
# Checks whose failure the source can excuse: what a pass over the source measures.
SOURCE_COMPARED = ("black", "frozen", "silence", "start_drift", "end_drift", "true_peak")


def is_checked(spec: job_pb2.OutputSpec) -> bool:
    """Whether an output gets a report: video and audio outputs, not pictures or the files of
    a custom command (whose shape is the command's business)."""
    return spec.type in VIDEO + AUDIO_ONLY and not spec.HasField("custom")


@dataclass(frozen=True)
class Context:
    """What judging needs besides the measurements."""

    # The output's expected duration: the source's, or its clip window's.
    expected_seconds: float
    # The integrated loudness the spec normalizes to, if it does.
    loudness_target: float | None = None


def loudness_target(spec: job_pb2.OutputSpec) -> float | None:
    """The integrated loudness the output was normalized to, if the spec asks for it."""
    if not wants_loudness(spec):
        return None
    try:
        return resolve_target(spec.audio.loudness).integrated_lufs
    except ValueError:
        return None


def duration_threshold(expected_seconds: float) -> float:
    return expected_seconds - max(
        DURATION_SLACK_SECONDS, expected_seconds * DURATION_SLACK_FRACTION
    )


def judge(
    name: str, value: float, source_value: float | None, context: Context
) -> tuple[float | None, int]:
    """(threshold, verdict) of one measurement. The threshold is the value at which it fails."""
    if name == "duration":
        threshold = duration_threshold(context.expected_seconds)
        return threshold, V.QC_VERDICT_FAIL if value < threshold else V.QC_VERDICT_PASS
    if name == "decode":
        return 1.0, V.QC_VERDICT_FAIL if value >= 1 else V.QC_VERDICT_PASS
    if name in ("black", "frozen", "silence"):
        if value < SEGMENT_FAIL_SECONDS:
            return SEGMENT_FAIL_SECONDS, V.QC_VERDICT_PASS
        shared = source_value is not None and source_value >= value - SEGMENT_SOURCE_SLACK
        return SEGMENT_FAIL_SECONDS, V.QC_VERDICT_WARN if shared else V.QC_VERDICT_FAIL
    if name in DRIFT_LIMITS:
        warn, fail = DRIFT_LIMITS[name]
        if value <= warn:
            return fail, V.QC_VERDICT_PASS
        shared = source_value is not None and abs(source_value - value) <= DRIFT_SOURCE_SLACK
        return fail, V.QC_VERDICT_FAIL if value > fail and not shared else V.QC_VERDICT_WARN
    if name == "loudness":
        target = context.loudness_target
        if target is None:
            return None, V.QC_VERDICT_PASS
        off = abs(value - target)
        if off > LOUDNESS_FAIL_LU:
            return target, V.QC_VERDICT_FAIL
        return target, V.QC_VERDICT_WARN if off > LOUDNESS_WARN_LU else V.QC_VERDICT_PASS
    if name == "true_peak":
        if value <= TRUE_PEAK_WARN:
            return TRUE_PEAK_FAIL, V.QC_VERDICT_PASS
        shared = source_value is not None and source_value >= TRUE_PEAK_FAIL
        failed = value > TRUE_PEAK_FAIL and not shared
        return TRUE_PEAK_FAIL, V.QC_VERDICT_FAIL if failed else V.QC_VERDICT_WARN
    raise ValueError(f"no quality-control check is called {name!r}")


def needs_source(name: str, value: float, context: Context) -> bool:
    """Whether the output alone fails `name`, and the source could excuse it."""
    return name in SOURCE_COMPARED and judge(name, value, None, context)[1] == V.QC_VERDICT_FAIL


def judged_check(
    name: str, value: float, source_value: float | None, context: Context, detail: str = ""
) -> job_pb2.QcCheck:
    threshold, verdict = judge(name, value, source_value, context)
    check = job_pb2.QcCheck(
        name=name,
        value=value,
        unit=UNITS[name],
        verdict=verdict,  # type: ignore[arg-type]
        detail=detail,
    )
    if threshold is not None:
        check.threshold = threshold
    if source_value is not None:
        check.source_value = source_value
    return check


def report_of(checks: Iterable[job_pb2.QcCheck]) -> job_pb2.QcReport:
    """The checks in CHECK_NAMES order with the overall verdict: the worst of them."""
    ordered = sorted(checks, key=lambda check: CHECK_NAMES.index(check.name))
    verdicts = {check.verdict for check in ordered}
    overall = next(
        (v for v in (V.QC_VERDICT_FAIL, V.QC_VERDICT_WARN) if v in verdicts), V.QC_VERDICT_PASS
    )
    return job_pb2.QcReport(verdict=overall, checks=ordered)


def failed_checks(report: job_pb2.QcReport) -> list[job_pb2.QcCheck]:
    return [check for check in report.checks if check.verdict == V.QC_VERDICT_FAIL]


def finite_level(value: float) -> float:
    """A level in dB as reported: -inf (digital silence) and below become LOWEST_LEVEL."""
    if math.isnan(value):
        return LOWEST_LEVEL
    return max(value, LOWEST_LEVEL)


def verdict_word(verdict: int) -> str:
    """ "pass", "warn" or "fail" (what qc.json, the CLI and the dashboard show)."""
    return V.Name(verdict).removeprefix("QC_VERDICT_").lower()
