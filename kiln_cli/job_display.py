"""How `kiln jobs` prints jobs: status, input, costs (per variant too), outputs (their audio and
text tracks, loudness per output and per track) and files."""

from __future__ import annotations

from typing import Any

from kiln.v1 import job_pb2, job_service_pb2
from rich.table import Table

from .common import stdout
from .watching import eta_text, short_enum, stage_name, status_name


def _money(money: job_pb2.Money) -> str:
    if not money.currency:
        return "-"
    return f"{money.micros / 1_000_000:.4f} {money.currency}"


def micro_money(money: job_pb2.Money) -> str:
    """To the micro: variants' figures then add up to their output's exactly, as shown."""
    if not money.currency:
        return "-"
    return f"{money.micros / 1_000_000:.6f} {money.currency}"


def _variant_cost_line(variant: job_pb2.VariantPricing) -> str:
    """One variant's share of a ladder's cost: what it is priced as, estimate and actual."""
    name = "dropped" if variant.dropped else variant.name
    codec = short_enum(job_pb2.VideoCodec, variant.codec, "VIDEO_CODEC_")
    quality = short_enum(job_pb2.Quality, variant.quality, "QUALITY_")
    actual = micro_money(variant.actual_cost)
    if variant.HasField("actual_cost"):
        actual += f" for {variant.billed_seconds:.2f}s"
    return (
        f"            variant {name} {variant.resolution or 'source'} {codec} {quality} "
        f"priced at {variant.priced_height}p {variant.fps:g}fps, "
        f"{micro_money(variant.rate_per_minute)}/min: "
        f"estimated {micro_money(variant.estimated_cost)}, actual {actual}"
    )


def _time(stamp: Any) -> str:
    if not stamp.seconds:
        return "-"
    return str(stamp.ToDatetime().replace(microsecond=0)) + "Z"


def show_job(job: job_pb2.Job) -> None:
    status = status_name(job.status).upper()
    stage = f" ({stage_name(job.stage)})" if job.stage else ""
    left = f"  {eta_text(job)}" if job.HasField("eta_seconds") else ""
    stdout.print(
        f"[bold]{job.id}[/]  {status}{stage}  {job.progress:.1f}%{left}  attempt {job.attempt}"
    )
    if job.input_origin_id:
        stdout.print(f"  input     {job.input_origin_id} {job.input_path}", markup=False)
    else:
        stdout.print(f"  input     {job.input_url}", markup=False)
    if job.output_origin_id:
        where = f"{job.output_origin_id} {job.output_path_prefix}".rstrip()
        stdout.print(f"  outputs   to {where}", markup=False)
    if job.input_info.duration_seconds:
        info = job.input_info
        videos = [s for s in info.streams if s.kind == "video"]
        size = f" {videos[0].width}x{videos[0].height}" if videos else ""
        stdout.print(f"  probed    {info.container} {info.duration_seconds:.2f}s{size}")
    stdout.print(
        f"  cost      estimated {_money(job.estimated_cost)}, actual {_money(job.actual_cost)}"
    )
    stdout.print(f"  created   {_time(job.create_time)}  completed {_time(job.complete_time)}")
    for key, value in sorted(job.metadata.items()):
        stdout.print(f"  metadata  {key}={value}", markup=False)
    if job.error.code:
        stdout.print(f"  [red]error[/]     {job.error.code}: {job.error.message}")
    for output in job.outputs:
        spec = output.spec
        what = spec.preset or short_enum(job_pb2.OutputType, spec.type, "OUTPUT_TYPE_")
        variants = ",".join(v.resolution for v in spec.video)
        state = short_enum(job_pb2.OutputStatus, output.status, "OUTPUT_STATUS_")
        left = f"  {eta_text(output)}" if output.HasField("eta_seconds") else ""
        stdout.print(
            f"  output    {output.id} {what} {variants}  {state} {output.progress:.1f}%{left}"
        )
        if output.variant_pricing:
            stdout.print(
                f"            cost estimated {micro_money(output.estimated_cost)}, "
                f"actual {micro_money(output.actual_cost)}; per variant:",
                markup=False,
            )
        for variant in output.variant_pricing:
            stdout.print(_variant_cost_line(variant), markup=False)
        if output.error.code:
            stdout.print(f"            [red]{output.error.code}[/]: {output.error.message}")
        for note in output.notes:
            stdout.print(f"            note: {note}", markup=False)
        for line in _track_lines(spec):
            stdout.print(line, markup=False, soft_wrap=True)
        if output.HasField("loudness"):
            stdout.print(_loudness_line(output.loudness), markup=False)
        for figures in output.track_loudness:
            stdout.print(_loudness_line(figures, _track_label(spec, figures)), markup=False)
        if output.HasField("qc"):
            stdout.print(qc_line(output.qc), markup=False)
        if output.playback_url:
            stdout.print(f"            play {output.playback_url}", markup=False, soft_wrap=True)
        for file in output.files:
            stdout.print(
                f"            {file.path}  {file.size_bytes} bytes  {file.mime_type}", markup=False
            )


def _track_source(track: job_pb2.AudioTrack | job_pb2.TextTrack) -> str:
    if track.HasField("stream_index"):
        return f"stream {track.stream_index}"
    if track.stream_language:
        return f"stream in {track.stream_language}"
    return track.url or f"origin {track.origin_path}"


def _track_lines(spec: job_pb2.OutputSpec) -> list[str]:
    """One line per audio and text track: position, language, name, where it comes from and
    what is special about it."""
    lines = []
    for position, audio in enumerate(spec.audio_tracks):
        facts = [f"{audio.channels}ch"] if audio.channels else []
        if audio.codec:
            facts.insert(0, short_enum(job_pb2.AudioCodec, audio.codec, "AUDIO_CODEC_"))
        if audio.default:
            facts.append("default")
        lines.append(_track_line("audio", position, audio, facts))
    for position, text in enumerate(spec.text_tracks):
        facts = [
            fact
            for fact, on in (
                ("captions", text.kind == job_pb2.TEXT_TRACK_KIND_CAPTIONS),
                ("default", text.default),
                ("forced", text.forced),
                ("burned in", text.burn_in),
            )
            if on
        ]
        lines.append(_track_line("text", position, text, facts))
    return lines


def _track_line(
    kind: str, position: int, track: job_pb2.AudioTrack | job_pb2.TextTrack, facts: list[str]
) -> str:
    name = f' "{track.name}"' if track.name else ""
    extra = f"  ({', '.join(facts)})" if facts else ""
    return (
        f"            {kind} track {position}  {track.language}{name}  "
        f"{_track_source(track)}{extra}"
    )


def _track_label(spec: job_pb2.OutputSpec, figures: job_pb2.AudioLoudness) -> str:
    index = figures.audio_track_index
    tracks = spec.audio_tracks
    language = f" ({tracks[index].language})" if 0 <= index < len(tracks) else ""
    return f"audio track {index}{language} "


def qc_line(report: job_pb2.QcReport) -> str:
    """ "qc pass", or "qc fail: duration 1.2 s (threshold 1.5); black 2.1 s (threshold 2)" naming
    every check that did not pass."""
    verdict = short_enum(job_pb2.QcVerdict, report.verdict, "QC_VERDICT_")
    flagged = [
        f"{short_enum(job_pb2.QcVerdict, check.verdict, 'QC_VERDICT_')} {check.name} "
        f"{check.value:g} {check.unit}"
        + (f" (threshold {check.threshold:g})" if check.HasField("threshold") else "")
        for check in report.checks
        if check.verdict != job_pb2.QC_VERDICT_PASS
    ]
    return f"            qc {verdict}" + (": " + "; ".join(flagged) if flagged else "")


def _loudness_line(figures: job_pb2.AudioLoudness, label: str = "") -> str:
    mode = short_enum(
        job_pb2.LoudnessNormalization, figures.normalization, "LOUDNESS_NORMALIZATION_"
    )
    return (
        f"            {label}loudness {figures.input_integrated_lufs:.1f} LUFS -> "
        f"{figures.output_integrated_lufs:.1f} LUFS, true peak "
        f"{figures.output_true_peak_dbtp:.1f} dBTP (target {figures.target_integrated_lufs:g} "
        f"LUFS, {figures.target_true_peak_dbtp:g} dBTP; {mode})"
    )


def show_job_page(response: job_service_pb2.ListResponse) -> None:
    table = Table(box=None, header_style="bold")
    table.add_column("ID", no_wrap=True, min_width=30)
    for column in ("STATUS", "PROGRESS", "OUTPUTS", "CREATED"):
        table.add_column(column, no_wrap=True)
    table.add_column("INPUT", overflow="fold")
    for job in response.jobs:
        table.add_row(
            job.id,
            status_name(job.status),
            f"{job.progress:.0f}%",
            str(len(job.outputs)),
            _time(job.create_time).removesuffix("Z"),
            job.input_url,
        )
    stdout.print(table)
    if response.next_page_token:
        stdout.print(f"more: kiln jobs list --page-token {response.next_page_token}")
