"""What the server accepts of a worker's loudness figures (Output.loudness). No I/O.

Figures come only for an output whose spec asked for loudness, with the very target the spec
resolves to; each within what loudnorm can report. They may be missing when the spec asked:
the input had no audio, or audio too quiet to measure (the worker says so in a note).
"""

from __future__ import annotations

import math

from kiln.v1 import job_pb2

from common.loudness import resolve_target, wants_loudness

N = job_pb2.LoudnessNormalization

# Measured figures beyond these are not a measurement: loudnorm's own limits (its measured_*
# options take I -99..0, TP -99..99, LRA 0..99), widened where a hot master may exceed them.
INTEGRATED_RANGE = (-99.0, 10.0)
TRUE_PEAK_RANGE = (-99.0, 30.0)
LRA_RANGE = (0.0, 100.0)
# Targets travel as doubles both ways; any difference beyond rounding is another target.
TARGET_TOLERANCE = 1e-6


def loudness_report_problems(
    loudness: job_pb2.AudioLoudness | None, spec: job_pb2.OutputSpec
) -> list[str]:
    """Problems of a reported AudioLoudness (None when the report has none) for this spec."""
    if loudness is None:
        return []
    if not wants_loudness(spec):
        return ["loudness figures were reported for an output that did not ask for them"]
    try:
        target = resolve_target(spec.audio.loudness)
    except ValueError:
        return ["loudness figures were reported for a spec whose target does not resolve"]
    problems = []
    asked = (target.integrated_lufs, target.true_peak_dbtp, target.lra)
    told = (
        loudness.target_integrated_lufs,
        loudness.target_true_peak_dbtp,
        loudness.target_lra,
    )
    if any(
        not math.isclose(a, t, abs_tol=TARGET_TOLERANCE) for a, t in zip(asked, told, strict=True)
    ):
        problems.append(f"loudness target {told} is not the spec's {asked}")
    for side in ("input", "output"):
        for name, (lowest, highest), unit in (
            ("integrated_lufs", INTEGRATED_RANGE, "LUFS"),
            ("true_peak_dbtp", TRUE_PEAK_RANGE, "dBTP"),
            ("lra", LRA_RANGE, "LU"),
        ):
            value = getattr(loudness, f"{side}_{name}")
            if not (math.isfinite(value) and lowest <= value <= highest):
                problems.append(
                    f"{side} loudness {name} {value!r} is not a number from "
                    f"{lowest:g} to {highest:g} {unit}"
                )
    if loudness.normalization not in (
        N.LOUDNESS_NORMALIZATION_LINEAR,
        N.LOUDNESS_NORMALIZATION_DYNAMIC,
    ):
        problems.append(f"loudness normalization {loudness.normalization} is not LINEAR or DYNAMIC")
    return problems


def track_loudness_problems(
    reports: list[job_pb2.AudioLoudness], spec: job_pb2.OutputSpec
) -> list[str]:
    """Per-track figures only for an output with audio tracks (then not Output.loudness's
    single one): each names a track of the spec once and is checked like a single report."""
    if not reports:
        return []
    if not spec.audio_tracks:
        return ["per-track loudness figures were reported for an output without audio tracks"]
    problems: list[str] = []
    seen: set[int] = set()
    for report in reports[: len(spec.audio_tracks) + 1]:
        index = report.audio_track_index
        if not 0 <= index < len(spec.audio_tracks) or index in seen:
            problems.append(f"loudness figures name audio track {index} wrongly or twice")
            break
        seen.add(index)
        problems += loudness_report_problems(report, spec)
    return problems
