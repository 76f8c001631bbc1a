"""What a task's outcome does to its job: probed, output done or failed, job finished.

Each step takes the JobRecord its caller read under the job's lock and keeps it current
(the store mirrors every guarded UPDATE onto it), so a result reads the job once.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

from kiln.v1 import job_pb2, job_service_pb2
from kiln.worker.v1 import worker_service_pb2

from common.chunk_mpd import LiveMpd

from ..domain import pricing, qc_reports
from ..domain.input_fit import input_problem
from ..domain.states import (
    OUTPUT_TERMINAL,
    PIECE_KINDS,
    TERMINAL,
    JobStatus,
    OutputStatus,
    TaskKind,
    TaskStatus,
)
from ..store.database import aware
from ..store.models import Output, Task
from ..store.store import JobRecord, Tx, now
from . import task_plan, variant_costs
from .chunk_plan import output_seconds, plan_chunks
from .chunk_reuse import KeptPieces, reuse_note
from .lifecycle import Lifecycle
from .live_playlists import live_manifests

__all__ = ["output_seconds"]

S = job_pb2.JobStage


class TaskOutcomes:
    """What a task's outcome does to its job (see the module docstring)."""

    def __init__(self, life: Lifecycle) -> None:
        self.life = life

    async def probed(
        self,
        tx: Tx,
        record: JobRecord,
        info: job_pb2.InputInfo,
        kept: KeptPieces | None = None,
    ) -> bool:
        """Record the input's facts and estimate; True when transcode tasks were queued.
        `kept`: a retried job's finished pieces (chunk_reuse), which are not encoded again."""
        job = record.job
        specs = [job_pb2.OutputSpec.FromString(output.spec) for output in record.outputs]
        if (problem := input_problem(info, specs)) is not None:
            await self.life.jobs.probe_failed(tx, record, problem)
            return False
        total = 0
        for output, spec in zip(record.outputs, specs, strict=True):
            seconds = output_seconds(spec, info.duration_seconds)
            cost, variants = self._priced(spec, info, seconds, job.priority)
            estimate: dict[str, Any] = {"estimated_cost_micros": cost}
            if pricing.shows_variants(spec):
                # A completed output of a retried job keeps what its variants were billed.
                billed = output.variant_pricing if output.status == OutputStatus.COMPLETED else None
                estimate["variant_pricing"] = variant_costs.estimated_entries(
                    variants, seconds, billed
                )
            await tx.outputs.update_output(output.id, **estimate)
            total += cost
        values = {
            "input_info": info.SerializeToString(),
            "probed_at": now(),
            "estimated_cost_micros": total,
        }
        if job.delayed_start:
            await self.life.jobs.move(tx, job, JobStatus.AWAITING_CONFIRMATION, **values)
            await self.life.notify_status(tx, record)
            return False
        await self.life.jobs.move(
            tx,
            job,
            JobStatus.PROCESSING,
            stage=S.JOB_STAGE_TRANSCODING,
            started_at=now(),
            **values,
        )
        await self.life.queue_transcodes(tx, record, kept)
        if kept:
            # An output whose pieces were all kept (its merge was what failed) merges now.
            for output in record.outputs:
                if output.status == OutputStatus.PENDING:
                    tasks = await current_output_tasks(tx, record, output.id)
                    await self._merge_when_pieces_done(tx, record, output.id, tasks)
        return True

    async def output_done(
        self,
        tx: Tx,
        record: JobRecord,
        output_id: str,
        result: worker_service_pb2.TranscodeResult,
    ) -> None:
        job = record.job
        output = _output(record, output_id)
        spec = job_pb2.OutputSpec.FromString(output.spec)
        info = job_pb2.InputInfo.FromString(job.input_info or b"")
        decision = plan_chunks(
            spec, info, self.life.chunking, concatenated=bool(job.concat_input_urls)
        )
        if decision.note and decision.note not in result.notes:
            # Long enough to chunk, but encoded in one pass: say why.
            result.notes.append(decision.note)
        if decision.chunks and job.attempt > 1:
            # A retry: how many chunks it kept from the earlier attempts (chunk_reuse).
            chunks = [
                t
                for t in await current_output_tasks(tx, record, output_id)
                if t.kind == TaskKind.CHUNK
            ]
            reused = sum(t.reused_from is not None for t in chunks)
            if chunks:
                result.notes.append(reuse_note(reused, len(chunks)))
        if result.HasField("qc") and await self._failed_qc(tx, record, output, spec, result):
            return
        cost, variants = self._priced(spec, info, result.encoded_seconds, job.priority)
        actual: dict[str, Any] = {"actual_cost_micros": cost}
        if pricing.shows_variants(spec):
            actual["variant_pricing"] = variant_costs.billed_entries(
                output.variant_pricing, variants, result.encoded_seconds
            )
        await tx.outputs.move_output(
            output_id,
            OutputStatus.COMPLETED,
            progress=100.0,
            result=result.SerializeToString(),
            **actual,
        )
        await self.life.emit_output_row(tx, job, output)
        await self.life.notify_output(tx, job, output)
        await self.life.jobs.finish_if_done(tx, record)

    async def _failed_qc(
        self,
        tx: Tx,
        record: JobRecord,
        output: Output,
        spec: job_pb2.OutputSpec,
        result: worker_service_pb2.TranscodeResult,
    ) -> bool:
        """Records the server's judgement of the result's QC report (docs/qc.md), in a column
        of its own since an output QC fails keeps it; True when QC_POLICY_FAIL failed the
        output for it."""
        job = record.job
        info = job_pb2.InputInfo.FromString(job.input_info or b"")
        expected = (
            result.encoded_seconds
            if job.concat_input_urls
            else output_seconds(spec, info.duration_seconds)
        )
        report = qc_reports.judged_report(result, spec, expected)
        result.ClearField("qc")
        await tx.outputs.update_output(output.id, qc=report.SerializeToString())
        output.qc = report.SerializeToString()
        if job.qc_policy != job_pb2.QC_POLICY_FAIL or report.verdict != job_pb2.QC_VERDICT_FAIL:
            return False
        await self.output_failed(tx, record, output.id, qc_reports.qc_failure(report))
        return True

    async def piece_done(
        self,
        tx: Tx,
        record: JobRecord,
        task: Task,
        result: worker_service_pb2.ChunkResult,
    ) -> tuple[dict[str, str], worker_service_pb2.TranscodeResult] | None:
        """A chunk or the audio of a chunked output is done: keep its result, queue the merge
        once every piece is done, and for HLS, DASH and CMAF return the manifests to publish
        now (play while encoding) with the output's files so far."""
        output_id = task_output_id(task)
        await tx.tasks.record_task_result(task.id, result.SerializeToString())
        tasks = await current_output_tasks(tx, record, output_id)
        pieces = [t for t in tasks if t.kind in PIECE_KINDS]
        output = _output(record, output_id)
        if OutputStatus(output.status) in OUTPUT_TERMINAL:
            return None
        await self._merge_when_pieces_done(tx, record, output_id, tasks)
        texts = await self._live_playlists(tx, record, output, pieces)
        if texts is None:
            return None
        return texts, worker_service_pb2.TranscodeResult.FromString(output.result or b"")

    async def live_output(self, tx: Tx, record: JobRecord, task: Task) -> dict[str, str] | None:
        """The live playlists of a running piece's HLS output (the AUDIO's segments so far
        were just kept), the output's files so far recorded; None when there are none."""
        output = _output(record, task_output_id(task))
        if OutputStatus(output.status) in OUTPUT_TERMINAL:
            return None
        tasks = await current_output_tasks(tx, record, output.id)
        pieces = [t for t in tasks if t.kind in PIECE_KINDS]
        return await self._live_playlists(tx, record, output, pieces)

    async def _live_playlists(
        self, tx: Tx, record: JobRecord, output: Output, pieces: list[Task]
    ) -> dict[str, str] | None:
        """For HLS, DASH and CMAF, the playlists and the dynamic MPD to publish now (play while
        encoding), the output's files so far recorded and announced; None for other types."""
        spec = job_pb2.OutputSpec.FromString(output.spec)
        if spec.type not in (
            job_pb2.OUTPUT_TYPE_HLS,
            job_pb2.OUTPUT_TYPE_DASH,
            job_pb2.OUTPUT_TYPE_CMAF,
        ):
            return None
        chunks = sorted((t for t in pieces if t.kind == TaskKind.CHUNK), key=_chunk_position)
        audio_task = next((t for t in pieces if t.kind == TaskKind.AUDIO), None)
        texts, files = live_manifests(
            spec,
            [_piece_result(t) for t in chunks],
            _audio_so_far(audio_task) if audio_task is not None else None,
            has_audio=audio_task is not None,
            live=_live_mpd(record, spec, complete=all(t.status == TaskStatus.DONE for t in pieces)),
        )
        live = worker_service_pb2.TranscodeResult(files=files)
        await tx.outputs.update_output(output.id, result=live.SerializeToString())
        output.result = live.SerializeToString()
        await self.life.emit_output_row(tx, record.job, output)
        return texts

    async def _merge_when_pieces_done(
        self, tx: Tx, record: JobRecord, output_id: str, tasks: list[Task]
    ) -> None:
        """Queue the output's MERGE once every piece of this run is done (and none is yet)."""
        job = record.job
        pieces = [t for t in tasks if t.kind in PIECE_KINDS]
        if not pieces or any(t.status != TaskStatus.DONE for t in pieces):
            return
        if any(t.kind == TaskKind.MERGE for t in tasks):
            return
        merge = task_plan.output_task(job.id, job.priority, output_id, TaskKind.MERGE)
        await self.life.queue_tasks(tx, [merge])
        if job.stage != S.JOB_STAGE_MERGING:
            await tx.jobs.update_job(job.id, stage=S.JOB_STAGE_MERGING)
            await self.life.emit(
                tx,
                job.id,
                progress=job_service_pb2.ProgressEvent(
                    progress=job.progress, stage=S.JOB_STAGE_MERGING
                ),
            )

    async def output_failed(
        self, tx: Tx, record: JobRecord, output_id: str, error: job_pb2.JobError
    ) -> None:
        # A chunked output has other tasks still open: they end with it.
        await tx.tasks.cancel_output_tasks(output_id)
        error.stage = error.stage or S.JOB_STAGE_TRANSCODING
        output = _output(record, output_id)
        await tx.outputs.move_output(
            output_id,
            OutputStatus.FAILED,
            error=error.SerializeToString(),
            actual_cost_micros=0,
            variant_pricing=variant_costs.failed_entries(output.variant_pricing),
        )
        await self.life.emit_output_row(tx, record.job, output)
        await self.life.notify_output(tx, record.job, output)
        await self.life.jobs.finish_if_done(tx, record, error)

    async def task_failed(
        self, tx: Tx, task: Task, record: JobRecord, error: job_pb2.JobError
    ) -> None:
        """A task given up on: its output fails, or for a probe the whole job."""
        if task.kind == TaskKind.PROBE:
            if JobStatus(record.job.status) not in TERMINAL:
                await self.life.jobs.probe_failed(tx, record, error)
        else:
            await self.output_failed(tx, record, task_output_id(task), error)

    def _priced(
        self,
        spec: job_pb2.OutputSpec,
        info: job_pb2.InputInfo,
        seconds: float,
        priority: int,
    ) -> tuple[int, list[pricing.VariantPrice]]:
        """The output's micros for `seconds` and, for video outputs, each variant's share."""
        return pricing.priced_output(spec, info, seconds, priority, self.life.pricing)


async def current_output_tasks(tx: Tx, record: JobRecord, output_id: str) -> list[Task]:
    """The output's tasks of this run of the job (a retried job keeps its old task rows)."""
    started = aware(record.job.started_at)
    return [
        task
        for task in await tx.tasks.output_tasks(output_id)
        if started is None or (aware(task.created_at) or started) >= started
    ]


def merge_plan(tasks: list[Task]) -> worker_service_pb2.MergePlan:
    """What the merge joins: the pieces' accepted results, chunks in output order."""
    plan = worker_service_pb2.MergePlan()
    chunks = sorted((t for t in tasks if t.kind == TaskKind.CHUNK), key=_chunk_position)
    for chunk in chunks:
        plan.chunks.add().ParseFromString(chunk.result or b"")
    audio = next((t for t in tasks if t.kind == TaskKind.AUDIO), None)
    if audio is not None:
        plan.has_audio = True
        plan.audio.ParseFromString(audio.result or b"")
    return plan


def _live_mpd(record: JobRecord, spec: job_pb2.OutputSpec, *, complete: bool) -> LiveMpd:
    """A dynamic MPD's clock: media time 0 at the job's start (the same in every update), and
    a presentation delay of everything since then plus the whole output, so a player going by
    it starts at 0 (common.chunk_mpd.LiveMpd)."""
    published = now().astimezone(UTC)
    started = aware(record.job.started_at) or published
    info = job_pb2.InputInfo.FromString(record.job.input_info or b"")
    elapsed = max((published - started).total_seconds(), 0.0)
    return LiveMpd(
        availability_start=started,
        published=published,
        delay_seconds=elapsed + output_seconds(spec, info.duration_seconds),
        complete=complete,
    )


def _chunk_position(task: Task) -> int:
    return task.chunk_index if task.chunk_index is not None else 0


def _piece_result(task: Task) -> worker_service_pb2.ChunkResult | None:
    if task.status != TaskStatus.DONE or not task.result:
        return None
    return worker_service_pb2.ChunkResult.FromString(task.result)


def _audio_so_far(task: Task) -> worker_service_pb2.ChunkResult | None:
    """The AUDIO piece's result, or while it runs the segments it has stored so far (which
    its result repeats): either way a list of complete segments from the first."""
    if not task.result:
        return None
    return worker_service_pb2.ChunkResult.FromString(task.result)


def task_output_id(task: Task) -> str:
    if task.output_id is None:
        raise ValueError(f"task {task.id} ({task.kind}) belongs to no output")
    return task.output_id


def _output(record: JobRecord, output_id: str) -> Output:
    return next(o for o in record.outputs if o.id == output_id)
