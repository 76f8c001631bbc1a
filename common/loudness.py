"""Loudness targets: the named presets, the ranges a target may take, and how a LoudnessSpec
resolves to one target. The server checks a spec with it at Create and checks a worker's
reported target against it; the worker resolves the spec with it before it normalizes, so both
sides read the same table.

The ranges are loudnorm's own (FFmpeg 5.1: I -70..-5 LUFS, TP -9..0 dBTP, LRA 1..50 LU).
True peak and loudness range are not fixed by every standard a preset names; the values chosen
for them are documented in docs/outputs.md.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from kiln.v1 import job_pb2


@dataclass(frozen=True)
class LoudnessTarget:
    integrated_lufs: float
    true_peak_dbtp: float
    lra: float


# EBU R128 and ATSC A/85 set integrated loudness and a true-peak ceiling and leave the range to
# the programme: a wide LRA (20 LU) keeps most sources in loudnorm's linear mode, one gain for the
# whole title. Streaming platforms play on phones and laptops, where a narrower range (11 LU)
# suits; a podcast, speech heard in noise, narrower still (8 LU).
PRESETS: Mapping[str, LoudnessTarget] = {
    "ebu_r128": LoudnessTarget(-23.0, -1.0, 20.0),
    "atsc_a85": LoudnessTarget(-24.0, -2.0, 20.0),
    "streaming": LoudnessTarget(-14.0, -1.0, 11.0),
    "podcast": LoudnessTarget(-16.0, -1.0, 8.0),
}
# What a figure left unset (with no preset) takes: EBU R128's.
DEFAULT_TARGET = PRESETS["ebu_r128"]

# (field, lowest, highest, unit) of each target figure.
RANGES: tuple[tuple[str, float, float, str], ...] = (
    ("integrated_lufs", -70.0, -5.0, "LUFS"),
    ("true_peak_dbtp", -9.0, 0.0, "dBTP"),
    ("lra", 1.0, 50.0, "LU"),
)


def loudness_problems(spec: job_pb2.LoudnessSpec) -> list[tuple[str, str]]:
    """(field, message) for each problem of a loudness spec; empty when it resolves."""
    problems: list[tuple[str, str]] = []
    if spec.preset and spec.preset not in PRESETS:
        problems.append(
            ("preset", f"unknown loudness preset {spec.preset!r}; one of {', '.join(PRESETS)}")
        )
    for name, lowest, highest, unit in RANGES:
        if not spec.HasField(name):
            continue
        value = getattr(spec, name)
        if not (math.isfinite(value) and lowest <= value <= highest):
            problems.append((name, f"must be between {lowest:g} and {highest:g} {unit}"))
    if not spec.preset and not any(spec.HasField(name) for name, *_ in RANGES):
        problems.append(("preset", "set a preset or at least one target figure"))
    return problems


def resolve_target(spec: job_pb2.LoudnessSpec) -> LoudnessTarget:
    """The target a valid spec means: the preset's figures (EBU R128's without one), each
    replaced by the spec's own where set. Raises ValueError naming the first problem."""
    problems = loudness_problems(spec)
    if problems:
        field, message = problems[0]
        raise ValueError(f"audio.loudness.{field}: {message}")
    base = PRESETS.get(spec.preset, DEFAULT_TARGET)
    return LoudnessTarget(
        integrated_lufs=spec.integrated_lufs
        if spec.HasField("integrated_lufs")
        else base.integrated_lufs,
        true_peak_dbtp=spec.true_peak_dbtp
        if spec.HasField("true_peak_dbtp")
        else base.true_peak_dbtp,
        lra=spec.lra if spec.HasField("lra") else base.lra,
    )


def wants_loudness(spec: job_pb2.OutputSpec) -> bool:
    return spec.audio.HasField("loudness") and not spec.audio.disabled
