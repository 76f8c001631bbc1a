"""Quality control of a written output: read back once, measured, judged, written as qc.json.

What is read (worker.media.qc_readback builds the one FFmpeg run):
- a single-file output: the file, every detector on its video and audio;
- a ladder: its smallest rung decoded with the detectors (and its decode errors), every other
  rung demuxed (each packet read, so a truncated rung or a missing segment shows, but not
  decoded), and the audio once (inside that rung for MPEG-TS HLS, which muxes it into every
  variant; else its own rendition). The rungs are scaled copies of the same pictures from one
  encode: black or frozen in one is black or frozen in all, so the detectors run where they
  cost least (a 360p rung has a quarter of a 720p's pixels); decoding every rung as well cost
  as much again as the rest of the pass on the benchmark's ladder (bench/qc_cost.py), which put
  the pass over its budget of 15 % of the encode.

When the output alone fails a check the source could excuse (common.qc.SOURCE_COMPARED: black,
frozen, silence, drift, true peak), the source's clip window is read back the same way, once,
and its figures go beside the output's: a source that fades to black makes every output warn,
not fail. That second run happens only then, so a clean output costs one decode.

Chunked outputs are not read back here (their MERGE stores segments it never holds); outputs
of custom commands are not checked (what they make is the command's business); concatenated
inputs are not compared with a source (there are several).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path

from kiln.v1 import job_pb2

from common import qc
from common.output_types import ADAPTIVE, AUDIO_ONLY
from common.storage.media_types import mime_type_for
from worker.media.containers import AUDIO_CONTAINERS, PROGRESSIVE_CONTAINERS
from worker.media.errors import CANCELED, MediaError
from worker.media.ffmpeg import ffreport_setting, run_ffmpeg
from worker.media.geometry import default_stream
from worker.media.input_access import InputAccess
from worker.media.ladder import AUDIO_RENDITION_NAME
from worker.media.qc_readback import (
    Findings,
    InputTiming,
    Reading,
    StreamTiming,
    clip_options,
    longest,
    outside,
    parse_readback_log,
    readback_command,
)
from worker.media.quality import decodable, encoded_location, measured_variants
from worker.media.timing import clip_window

T = job_pb2.OutputType
OUTPUT_LOG = "qc-output.log"
SOURCE_LOG = "qc-source.log"


@dataclass(frozen=True)
class Plan:
    """The readings of an output, and which of them carry what."""

    readings: list[Reading]
    # Indexes of readings whose video is a rendition (each rung, or the one file).
    renditions: list[int]
    # The reading whose video carries the detectors, and the one whose audio is read.
    detector: int | None
    audio: int | None


def output_has_streams(spec: job_pb2.OutputSpec, info: job_pb2.InputInfo) -> tuple[bool, bool]:
    """(video, audio): what the encode put in the output, by the builders' own rules."""
    video = spec.type not in AUDIO_ONLY and default_stream(info, "video") is not None
    audio = not spec.audio.disabled and (
        bool(spec.audio_tracks) or default_stream(info, "audio") is not None
    )
    return video, audio


def readback_plan(
    spec: job_pb2.OutputSpec, info: job_pb2.InputInfo, out_dir: Path, work_dir: Path
) -> Plan:
    has_video, has_audio = output_has_streams(spec, info)
    if spec.type not in ADAPTIVE:
        container = PROGRESSIVE_CONTAINERS.get(spec.type) or AUDIO_CONTAINERS[spec.type]
        reading = Reading(
            str(out_dir / container.file_name), True if has_video else None, has_audio
        )
        return Plan([reading], [0], 0 if has_video else None, 0 if has_audio else None)
    variants = measured_variants(spec, info)
    smallest = min(range(len(variants)), key=lambda i: variants[i].width * variants[i].height)
    ts_hls = (
        spec.type == T.OUTPUT_TYPE_HLS
        and spec.hls.segment_format != job_pb2.HLS_SEGMENT_FORMAT_FMP4
    )
    # Outputs with audio tracks carry several renditions: the video is read, not the tracks.
    separate_audio = has_audio and not ts_hls and not spec.audio_tracks
    readings = [
        Reading(
            str(decodable(encoded_location(spec, v.position, out_dir), work_dir, v.position)),
            video_detectors=position == smallest,
            audio=has_audio and ts_hls and position == smallest,
            frame_rate=v.frame_rate,
        )
        for position, v in enumerate(variants)
    ]
    audio = smallest if has_audio and ts_hls else None
    if separate_audio:
        audio = len(readings)
        readings.append(
            Reading(str(_audio_location(spec, len(variants), out_dir, work_dir)), None, True)
        )
    return Plan(readings, list(range(len(variants))), smallest, audio)


def _audio_location(spec: job_pb2.OutputSpec, position: int, out_dir: Path, work_dir: Path) -> Path:
    if spec.type == T.OUTPUT_TYPE_HLS:
        return out_dir / AUDIO_RENDITION_NAME / "index.m3u8"
    parts = [out_dir / f"init-{position}.mp4", *sorted(out_dir.glob(f"seg-{position}-*.m4s"))]
    return decodable(parts, work_dir, position)


async def check_output(
    *,
    input_path: str | None,
    spec: job_pb2.OutputSpec,
    info: job_pb2.InputInfo,
    expected_seconds: float,
    out_dir: Path,
    work_dir: Path,
    access: InputAccess,
    cancel_event: asyncio.Event,
    ffmpeg: str = "ffmpeg",
) -> tuple[job_pb2.QcReport, job_pb2.OutputFile]:
    """Reads the finished output back, judges it, writes qc.json into out_dir; returns the
    report and the OutputFile describing qc.json. input_path None: no source to compare with."""
    await asyncio.to_thread(work_dir.mkdir, parents=True, exist_ok=True)
    plan = await asyncio.to_thread(readback_plan, spec, info, out_dir, work_dir)
    video = default_stream(info, "video")
    rate = video.frame_rate if video is not None else 0.0
    findings = await _read_back(
        plan.readings, work_dir / OUTPUT_LOG, rate, access, cancel_event, ffmpeg
    )
    measured = measurements(findings, plan)
    context = qc.Context(expected_seconds, qc.loudness_target(spec))
    source: dict[str, float] = {}
    wanted = [
        name for name, (value, _) in measured.items() if qc.needs_source(name, value, context)
    ]
    if wanted and input_path is not None:
        source_plan = _source_plan(input_path, spec, info, plan)
        source_findings = await _read_back(
            source_plan.readings, work_dir / SOURCE_LOG, rate, access, cancel_event, ffmpeg
        )
        figures = measurements(source_findings, source_plan)
        source = {name: figures[name][0] for name in wanted if name in figures}
    report = qc.report_of(
        qc.judged_check(name, value, source.get(name), context, detail)
        for name, (value, detail) in measured.items()
    )
    return report, await asyncio.to_thread(write_qc_file, out_dir, report)


def _source_plan(
    input_path: str, spec: job_pb2.OutputSpec, info: job_pb2.InputInfo, output: Plan
) -> Plan:
    """The source's clip window read like the output: detectors where the output had them."""
    start, length = clip_window(spec.clip, info.duration_seconds)
    window = clip_options(start, length if spec.clip.duration_seconds > 0 else None)
    video = default_stream(info, "video") if output.detector is not None else None
    audio = default_stream(info, "audio") if output.audio is not None else None
    reading = Reading(
        input_path,
        True if video is not None else None,
        audio is not None,
        before_input=window,
        video_stream=str(video.index) if video is not None else "v:0",
        audio_stream=str(audio.index) if audio is not None else "a:0",
    )
    return Plan([reading], [0], 0 if video is not None else None, 0 if audio is not None else None)


async def _read_back(
    readings: list[Reading],
    log_path: Path,
    frame_rate: float,
    access: InputAccess,
    cancel_event: asyncio.Event,
    ffmpeg: str,
) -> Findings:
    """Runs a read-back; a run FFmpeg gives up on is a decode error, not a worker failure."""
    env = access.environment()
    env["FFREPORT"] = ffreport_setting(log_path, level=40)
    failure = ""
    try:
        await run_ffmpeg(
            access.apply(readback_command(readings, ffmpeg)),
            env=env,
            duration=1.0,
            on_progress=None,
            cancel_event=cancel_event,
        )
    except MediaError as error:
        if error.code == CANCELED:
            raise
        failure = error.message
    text = await asyncio.to_thread(_read_log, log_path)
    findings = parse_readback_log(text, readings, frame_rate)
    if failure:
        findings.decode_errors = max(findings.decode_errors, 1)
        findings.first_error = findings.first_error or failure[:200]
    return findings


def _read_log(path: Path) -> str:
    try:
        return path.read_text("utf-8", "replace")
    except FileNotFoundError:
        return ""


def measurements(findings: Findings, plan: Plan) -> dict[str, tuple[float, str]]:
    """name -> (value, detail) of every check the output's streams allow."""
    timings = findings.timings
    audio = timings[plan.audio].audio if plan.audio is not None and plan.audio in timings else None
    result: dict[str, tuple[float, str]] = {}
    result["duration"] = _duration(timings, plan, audio)
    result["decode"] = (
        float(findings.decode_errors),
        f"first: {findings.first_error}" if findings.decode_errors else "",
    )
    detected = timings.get(plan.detector) if plan.detector is not None else None
    video = detected.video if detected is not None else None
    if video is not None:
        frozen = outside(findings.frozen, findings.black, video.end)
        for name, segments in (("black", findings.black), ("frozen", frozen)):
            result[name] = _segment(segments, video.start, video.end)
    if audio is not None:
        result["silence"] = _segment(findings.silence, audio.start, audio.end)
        if video is not None:
            start, end = abs(video.start - audio.start), abs(video.end - audio.end)
            result["start_drift"] = (round(start, 3), _drift("starts", video.start, audio.start))
            result["end_drift"] = (round(end, 3), _drift("ends", video.end, audio.end))
        if findings.integrated_lufs is not None:
            result["loudness"] = (
                qc.finite_level(findings.integrated_lufs),
                "integrated (EBU R128)",
            )
        if findings.true_peak_dbtp is not None:
            result["true_peak"] = (qc.finite_level(findings.true_peak_dbtp), "")
    return result


def _duration(
    timings: dict[int, InputTiming], plan: Plan, audio: StreamTiming | None
) -> tuple[float, str]:
    """How long the output plays: from its first frame to the end of its longest stream, less
    how far its shortest video rendition falls short of its longest (a truncated rung is a
    truncated output, even while the audio and the other rungs run on). An output that
    decoded nothing has length 0."""
    videos: dict[int, StreamTiming] = {}
    for index in plan.renditions if plan.detector is not None else []:
        video = timings[index].video if index in timings else None
        if video is None:
            return 0.0, f"rendition {index} decoded no video"
        videos[index] = video
    streams = [*videos.values(), *([audio] if audio is not None else [])]
    if not streams:
        return 0.0, "nothing decoded"
    length = max(s.end for s in streams) - min(s.start for s in streams)
    detail = f"{length:.2f} s"
    if len(videos) > 1:
        ends = {index: video.end for index, video in videos.items()}
        shortest = min(ends, key=lambda index: ends[index])
        short_by = max(ends.values()) - ends[shortest]
        if short_by > 0:
            length -= short_by
            detail += f" (rendition {shortest} ends {short_by:.2f} s before the longest)"
    return round(length, 3), detail


def _segment(segments, stream_start: float, stream_end: float) -> tuple[float, str]:
    length, start = longest(segments, stream_end)
    if length <= 0:
        return 0.0, ""
    return round(length, 3), f"longest {length:.2f} s from {start - stream_start:.2f} s"


def _drift(what: str, video: float, audio: float) -> str:
    if abs(video - audio) < 0.0005:
        return ""
    first = "audio" if audio < video else "video"
    return f"{first} {what} {abs(video - audio):.3f} s earlier"


def write_qc_file(out_dir: Path, report: job_pb2.QcReport) -> job_pb2.OutputFile:
    # Described here rather than by describe_output_file, which would hand it to ffprobe.
    path = out_dir / qc.QC_FILE_NAME
    path.write_text(qc_json(report), "utf-8")
    return job_pb2.OutputFile(
        path=qc.QC_FILE_NAME, size_bytes=path.stat().st_size, mime_type=mime_type_for(path)
    )


def qc_json(report: job_pb2.QcReport) -> str:
    checks = []
    for check in report.checks:
        entry: dict[str, object] = {
            "name": check.name,
            "value": check.value,
            "unit": check.unit,
            "threshold": check.threshold if check.HasField("threshold") else None,
            "verdict": qc.verdict_word(check.verdict),
        }
        if check.HasField("source_value"):
            entry["source_value"] = check.source_value
        if check.detail:
            entry["detail"] = check.detail
        checks.append(entry)
    document = {"verdict": qc.verdict_word(report.verdict), "checks": checks}
    return json.dumps(document, indent=2) + "\n"
