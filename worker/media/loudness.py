"""Loudness normalization: FFmpeg's loudnorm in two passes, and the figures it reports.

The first pass measures the audio exactly as the output takes it (the clip window, the
down-mix of worker.media.channels) in its own FFmpeg run, before the encode; the encode's audio
filter then carries the measured values (measured_I, measured_TP, measured_LRA,
measured_thresh, offset) with linear=true. loudnorm applies one gain when the source's range is
within the target's and that gain keeps the true peak at or below the target, and falls back to
its dynamic mode by itself otherwise; which one ran is read from its report.

It runs once per output, in the task that encodes the output's audio (the TRANSCODE, or a
chunked output's AUDIO piece), not in the probe: the probe task does not carry the outputs'
specs, and each output's clip window and channel count change what is measured. The rungs of a
ladder share it: they share one audio encode (MPEG-TS HLS repeats the same filter with the same
figures in every variant).

loudnorm reports at info level, above the error level every managed run keeps stderr at, so
both passes write an FFREPORT log (outside the output folder) that is read back here.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from kiln.v1 import job_pb2

from common.loudness import LoudnessTarget, resolve_target, wants_loudness
from worker.media.channels import channel_plan
from worker.media.errors import ENCODE_FAILED, MediaError, OutputSpecError
from worker.media.ffmpeg import ffreport_setting, run_ffmpeg
from worker.media.geometry import default_stream
from worker.media.input_access import InputAccess
from worker.media.plan import COMMON_FLAGS, CommandPlan
from worker.media.timing import clip_window, input_args, seconds_arg

N = job_pb2.LoudnessNormalization

MEASURE_LOG_NAME = "loudness-measure.log"
ENCODE_LOG_NAME = "encode.log"
# Below this integrated loudness (loudnorm's lowest target) there is nothing to normalize:
# silence, or near it, would be amplified into noise.
QUIETEST_LUFS = -70.0
# What loudnorm's measured_* options accept (FFmpeg 5.1).
_MEASURED_LIMITS = {
    "measured_I": (-99.0, 0.0),
    "measured_TP": (-99.0, 99.0),
    "measured_LRA": (0.0, 99.0),
    "measured_thresh": (-99.0, 0.0),
}
_REPORT = re.compile(r"\{[^{}]*\"input_i\"[^{}]*\}")


@dataclass(frozen=True)
class SecondPass:
    """The target and the first pass's figures: what the encode's loudnorm is given."""

    target: LoudnessTarget
    integrated_lufs: float
    true_peak_dbtp: float
    lra: float
    threshold: float
    target_offset: float

    def filter(self) -> str:
        measured = {
            "measured_I": self.integrated_lufs,
            "measured_TP": self.true_peak_dbtp,
            "measured_LRA": self.lra,
            "measured_thresh": self.threshold,
        }
        clamped = {
            name: min(max(value, _MEASURED_LIMITS[name][0]), _MEASURED_LIMITS[name][1])
            for name, value in measured.items()
        }
        options = [
            f"I={self.target.integrated_lufs:g}",
            f"TP={self.target.true_peak_dbtp:g}",
            f"LRA={self.target.lra:g}",
            *(f"{name}={value:.2f}" for name, value in clamped.items()),
            f"offset={self.target_offset:.2f}",
            "linear=true",
            "print_format=json",
        ]
        return "loudnorm=" + ":".join(options)


def target_of(spec: job_pb2.OutputSpec) -> LoudnessTarget:
    """The spec's target, re-checked here: a spec the server should have refused fails."""
    try:
        return resolve_target(spec.audio.loudness)
    except ValueError as error:
        raise OutputSpecError(str(error)) from None


def first_pass_command(
    *,
    input_path: str,
    spec: job_pb2.OutputSpec,
    info: job_pb2.InputInfo,
    target: LoudnessTarget,
    ffmpeg: str = "ffmpeg",
) -> list[str] | None:
    """loudnorm measuring the output's audio as the encode will take it; None without audio."""
    audio = default_stream(info, "audio")
    if audio is None:
        return None
    return stream_first_pass(input_path, audio, spec.audio, spec, info, target, ffmpeg)


def stream_first_pass(
    input_path: str,
    audio: job_pb2.StreamInfo,
    settings: job_pb2.AudioSpec,
    spec: job_pb2.OutputSpec,
    info: job_pb2.InputInfo,
    target: LoudnessTarget,
    ffmpeg: str = "ffmpeg",
) -> list[str]:
    """loudnorm measuring one audio stream of `input_path` as the encode takes it: the
    output's clip window, the down-mix `settings` ask for."""
    start, duration = clip_window(spec.clip, info.duration_seconds)
    argv = [ffmpeg, *COMMON_FLAGS, *input_args(input_path, start), "-map", f"0:{audio.index}"]
    if spec.clip.duration_seconds > 0:
        argv += ["-t", seconds_arg(duration)]
    downmix = channel_plan(settings, audio, notes=[]).downmix
    measure = (
        f"loudnorm=I={target.integrated_lufs:g}:TP={target.true_peak_dbtp:g}:"
        f"LRA={target.lra:g}:print_format=json"
    )
    chain = ",".join(step for step in (downmix, measure) if step)
    return [*argv, "-vn", "-af", chain, "-f", "null", "-"]


async def measure_input(
    *,
    input_path: str,
    spec: job_pb2.OutputSpec,
    info: job_pb2.InputInfo,
    work_dir: Path,
    access: InputAccess,
    cancel_event: asyncio.Event,
    notes: list[str],
    ffmpeg: str = "ffmpeg",
) -> SecondPass | None:
    """The first pass, when the spec asks for loudness; None when there is nothing to
    normalize (no loudness asked, no audio, or audio too quiet to measure: a note says so)."""
    if not wants_loudness(spec):
        return None
    target = target_of(spec)
    argv = first_pass_command(
        input_path=input_path, spec=spec, info=info, target=target, ffmpeg=ffmpeg
    )
    if argv is None:
        return None
    return await run_first_pass(
        argv,
        spec=spec,
        info=info,
        target=target,
        log_path=work_dir / MEASURE_LOG_NAME,
        access=access,
        cancel_event=cancel_event,
        notes=notes,
    )


async def run_first_pass(
    argv: list[str],
    *,
    spec: job_pb2.OutputSpec,
    info: job_pb2.InputInfo,
    target: LoudnessTarget,
    log_path: Path,
    access: InputAccess,
    cancel_event: asyncio.Event,
    notes: list[str],
    what: str = "audio",
) -> SecondPass | None:
    """Runs a first pass (its loudnorm report written to log_path); None, with a note, when
    the audio is too quiet to measure."""
    await asyncio.to_thread(log_path.parent.mkdir, parents=True, exist_ok=True)
    env = access.environment()
    env["FFREPORT"] = ffreport_setting(log_path)
    _, duration = clip_window(spec.clip, info.duration_seconds)
    await run_ffmpeg(
        access.apply(argv), env=env, duration=duration, on_progress=None, cancel_event=cancel_event
    )
    report = loudnorm_report(await asyncio.to_thread(log_path.read_text, "utf-8", "replace"))
    if report is None:
        raise MediaError(ENCODE_FAILED, "loudness measurement reported no figures")
    integrated = _number(report, "input_i")
    if not integrated > QUIETEST_LUFS:
        notes.append(
            f"{what}: too quiet to measure (below {QUIETEST_LUFS:g} LUFS); loudness left as it is"
        )
        return None
    return SecondPass(
        target=target,
        integrated_lufs=integrated,
        true_peak_dbtp=_number(report, "input_tp"),
        lra=_number(report, "input_lra"),
        threshold=_number(report, "input_thresh"),
        target_offset=_number(report, "target_offset"),
    )


def loudnorm_report(log_text: str) -> dict[str, str] | None:
    """The first JSON block loudnorm wrote to a log, or None."""
    match = _REPORT.search(log_text)
    if match is None:
        return None
    try:
        document = json.loads(match.group())
    except ValueError:
        return None
    return {str(key): str(value) for key, value in document.items()}


def output_figures(log_text: str, second: SecondPass) -> job_pb2.AudioLoudness:
    """What the encode's loudnorm reported: the normalized audio's figures and its mode."""
    report = loudnorm_report(log_text)
    if report is None:
        raise MediaError(ENCODE_FAILED, "loudness normalization reported no figures")
    return _figures(report, second)


def track_figures(
    log_text: str, seconds: list[tuple[int, SecondPass]]
) -> list[job_pb2.AudioLoudness]:
    """What each audio track's loudnorm reported, `seconds` being (track position, its second
    pass) in output stream order. FFmpeg 5.1 frees each output stream's filter graph in stream
    order, and loudnorm prints its report when freed, so the reports come in that order."""
    reports = []
    for match in _REPORT.finditer(log_text):
        try:
            document = json.loads(match.group())
        except ValueError:
            continue
        reports.append({str(key): str(value) for key, value in document.items()})
    if len(reports) != len(seconds):
        raise MediaError(
            ENCODE_FAILED, f"{len(seconds)} tracks were normalized, {len(reports)} reported"
        )
    figures = []
    for report, (position, second) in zip(reports, seconds, strict=True):
        figure = _figures(report, second)
        figure.audio_track_index = position
        figures.append(figure)
    return figures


def _figures(report: dict[str, str], second: SecondPass) -> job_pb2.AudioLoudness:
    mode = report.get("normalization_type", "")
    if mode not in ("linear", "dynamic"):
        raise MediaError(ENCODE_FAILED, f"loudnorm reported normalization {mode[:20]!r}")
    return job_pb2.AudioLoudness(
        target_integrated_lufs=second.target.integrated_lufs,
        target_true_peak_dbtp=second.target.true_peak_dbtp,
        target_lra=second.target.lra,
        input_integrated_lufs=second.integrated_lufs,
        input_true_peak_dbtp=second.true_peak_dbtp,
        input_lra=second.lra,
        output_integrated_lufs=_number(report, "output_i"),
        output_true_peak_dbtp=_number(report, "output_tp"),
        output_lra=_number(report, "output_lra"),
        normalization=(
            N.LOUDNESS_NORMALIZATION_LINEAR
            if mode == "linear"
            else N.LOUDNESS_NORMALIZATION_DYNAMIC
        ),
    )


async def normalized_figures(
    plan: CommandPlan, second: SecondPass | None
) -> job_pb2.AudioLoudness | None:
    """The figures of an encode that normalized (its report log read back), else None."""
    if second is None or plan.report_log is None:
        return None
    text = await asyncio.to_thread(plan.report_log.read_text, "utf-8", "replace")
    return output_figures(text, second)


def _number(report: dict[str, str], key: str) -> float:
    # loudnorm prints "-inf" for silence; json gives strings like "-23.04".
    try:
        value = float(report[key])
    except (KeyError, ValueError):
        raise MediaError(ENCODE_FAILED, f"loudnorm reported no number for {key}") from None
    if key != "input_i" and not math.isfinite(value):
        raise MediaError(ENCODE_FAILED, f"loudnorm reported {value} for {key}")
    return value
