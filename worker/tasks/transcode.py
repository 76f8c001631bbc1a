"""A transcode task: one whole output, encoded, packaged, described and stored."""

from __future__ import annotations

import asyncio

from kiln.v1 import job_pb2
from kiln.worker.v1 import worker_service_pb2 as wpb

from common import qc

from ..media.audio_tracks import normalized
from ..media.commands import build_command
from ..media.encryption import encrypt_ladder
from ..media.loudness import (
    ENCODE_LOG_NAME,
    SecondPass,
    measure_input,
    normalized_figures,
    track_figures,
)
from ..media.packaging import finalize_output
from ..media.plan import CommandPlan, LadderPackaging
from ..media.qc import check_output
from ..media.quality import QUALITY_FILE_NAME, measure_quality
from ..media.together import both
from ..overlay_images import prepare_overlays
from ..tracing import package_span
from .audio_tracks import prepare_audio_tracks
from .run import TaskRun, describe_folder
from .task_keys import task_encryption
from .text import prepare_text_tracks

S = job_pb2.JobStage
# What the quality pass and QC give back (None: not run): figures or report, and the file.
Measured = tuple[list[job_pb2.VariantQuality], job_pb2.OutputFile | None]
Checked = tuple[job_pb2.QcReport | None, job_pb2.OutputFile | None]


async def transcode(run: TaskRun) -> wpb.TranscodeResult:
    task = run.task
    out_dir = run.output_folder()

    loudness_notes: list[str] = []

    async def read_and_encode() -> tuple[CommandPlan, str, SecondPass | None]:
        location, _ = await run.locate(
            task.input_url,
            run.scratch / "input-0",
            known_ranges=task.input_info.supports_byte_ranges or None,
        )
        # Text tracks first: a broken subtitle file fails the output before any encoding.
        text_tracks = await prepare_text_tracks(run, location, task.output_spec, task.input_info)
        # Audio tracks each get their own loudness first pass; without them, one for the
        # output (every rung shares it).
        audio_tracks = await prepare_audio_tracks(run, location, task.output_spec, loudness_notes)
        second_pass = None
        if not audio_tracks:
            second_pass = await measure_input(
                input_path=location,
                spec=task.output_spec,
                info=task.input_info,
                work_dir=run.scratch / "loudness",
                access=run.inputs.access,
                cancel_event=run.stop,
                notes=loudness_notes,
            )
        plan = build_command(
            input_path=location,
            spec=task.output_spec,
            info=task.input_info,
            out_dir=out_dir,
            extra_inputs=await _concat_inputs(run),
            loudness=second_pass,
            overlays=await prepare_overlays(task.output_spec, run.inputs, run.scratch / "overlays"),
            text_tracks=text_tracks,
            audio_tracks=audio_tracks,
            encryption=task_encryption(task),
        )
        if second_pass is not None or normalized(audio_tracks):
            plan.report_log = run.scratch / "loudness" / ENCODE_LOG_NAME
        await run.encode(plan)
        return plan, location, second_pass

    plan, location, second_pass = await run.inputs.guarded(read_and_encode())
    plan.notes += loudness_notes
    loudness = await normalized_figures(plan, second_pass)
    track_loudness = await _track_figures(plan)
    run.progress.stage = S.JOB_STAGE_PACKAGING
    spec = task.output_spec
    encrypted = isinstance(plan.finalize, LadderPackaging) and plan.finalize.encryption is not None
    # Reports the read-backs write into out_dir and describe themselves.
    reports = [
        name
        for name, wanted in (
            (QUALITY_FILE_NAME, spec.measure_quality),
            (qc.QC_FILE_NAME, qc.is_checked(spec)),
        )
        if wanted
    ]

    async def finalize_and_describe() -> list[job_pb2.OutputFile] | None:
        # Playlists are rewritten from the produced segments and sprite maps written before
        # anything is described; an encrypted ladder is described once it is encrypted.
        plan.notes += await finalize_output(spec, task.input_info, out_dir, plan)
        return None if encrypted else await describe_folder(out_dir, leave_out=reports)

    async def read_back() -> tuple[Measured, Checked]:
        # The read-backs decode the media files and finalize rewrites only manifests, master
        # playlists and sidecars beside them: the two run at once, so the ffprobe runs of
        # finalize and describe take no wall time of their own on a machine with two cores.
        quality: Measured = ([], None)
        if spec.measure_quality:
            # A second pass over the source and the written output (worker.media.quality).
            quality = await run.inputs.guarded(
                measure_quality(
                    input_path=location,
                    spec=spec,
                    info=task.input_info,
                    out_dir=out_dir,
                    work_dir=run.scratch / "quality",
                    access=run.inputs.access,
                    cancel_event=run.stop,
                )
            )
        checked: Checked = (None, None)
        if qc.is_checked(spec):
            # The output read back once (worker.media.qc); the source only on a finding.
            checked = await run.inputs.guarded(
                check_output(
                    input_path=None if task.concat_input_urls else location,
                    spec=spec,
                    info=task.input_info,
                    expected_seconds=plan.expected_duration,
                    out_dir=out_dir,
                    work_dir=run.scratch / "qc",
                    access=run.inputs.access,
                    cancel_event=run.stop,
                )
            )
        return quality, checked

    with package_span(spec):
        described, ((quality, quality_file), (report, qc_file)) = await both(
            finalize_and_describe(), read_back()
        )
        if described is None:
            # Encrypted last: the manifests, the quality pass and QC read the clear segments,
            # and what is described (sizes) and stored is what players get.
            if isinstance(plan.finalize, LadderPackaging):
                await encrypt_ladder(plan.finalize)
            described = await describe_folder(out_dir, leave_out=reports)
        files = described + [file for file in (quality_file, qc_file) if file is not None]
    # The heartbeat keeps running: a long upload still extends the lease.
    run.progress.stage = S.JOB_STAGE_UPLOADING
    await run.store(out_dir, files, replace=True)
    return wpb.TranscodeResult(
        files=files,
        notes=plan.notes,
        encoded_seconds=plan.expected_duration,
        quality=quality,
        loudness=loudness,
        track_loudness=track_loudness,
        qc=report,
    )


async def _track_figures(plan: CommandPlan) -> list[job_pb2.AudioLoudness]:
    """Each normalized audio track's figures, read back from the encode's report log."""
    seconds = normalized(plan.audio_tracks)
    if not seconds or plan.report_log is None:
        return []
    text = await asyncio.to_thread(plan.report_log.read_text, "utf-8", "replace")
    return track_figures(text, seconds)


async def _concat_inputs(run: TaskRun) -> list[tuple[str, job_pb2.InputInfo]]:
    """Inputs joined after the first; each is probed here (the server probed only the first)."""
    extra = []
    for index, url in enumerate(run.task.concat_input_urls, start=1):
        location, _ = await run.locate(url, run.scratch / f"input-{index}", known_ranges=None)
        extra.append((location, await run.probe(location)))
    return extra
