"""A piece of a chunked output: a time range of its video (every variant), or its whole
audio. The files go next to those of the other pieces, never replacing them."""

from __future__ import annotations

from pathlib import Path

from kiln.v1 import job_pb2
from kiln.worker.v1 import worker_service_pb2 as wpb

from common.hls_playlists import Rendition

from ..media.chunks import ChunkCommand, ChunkWindow, build_audio_command, build_video_chunk_command
from ..media.loudness import ENCODE_LOG_NAME, SecondPass, measure_input, normalized_figures
from ..media.merge import describe_chunk_file, measure_chunk_renditions
from ..media.overlays import OverlayDrawing
from ..overlay_images import prepare_overlays
from .live_audio import audio_reported_while_encoding
from .run import TaskRun, describe_folder

S = job_pb2.JobStage


async def encode_piece(run: TaskRun) -> wpb.ChunkResult:
    task = run.task
    out_dir = run.output_folder()

    notes: list[str] = []

    async def read_and_encode() -> tuple[ChunkCommand, SecondPass | None]:
        location, _ = await run.locate(
            task.input_url,
            run.scratch / "input-0",
            known_ranges=task.input_info.supports_byte_ranges or None,
        )
        second_pass = None
        if task.kind == wpb.TASK_KIND_AUDIO:
            # The AUDIO piece encodes the output's whole audio once: it normalizes it.
            second_pass = await measure_input(
                input_path=location,
                spec=task.output_spec,
                info=task.input_info,
                work_dir=run.scratch / "loudness",
                access=run.inputs.access,
                cancel_event=run.stop,
                notes=notes,
            )
        overlays = None
        if task.kind != wpb.TASK_KIND_AUDIO:
            # Every chunk stages the images itself: chunks run on any worker.
            overlays = await prepare_overlays(
                task.output_spec, run.inputs, run.scratch / "overlays"
            )
        command = _piece_command(task, location, out_dir, second_pass, overlays)
        if second_pass is not None:
            command.plan.report_log = run.scratch / "loudness" / ENCODE_LOG_NAME
        if task.kind == wpb.TASK_KIND_AUDIO and command.playlists:
            # An adaptive output's audio (MPEG-TS or fMP4): its segments are stored and
            # reported as they are made.
            [(name, playlist)] = command.playlists.items()
            async with audio_reported_while_encoding(run, out_dir, playlist, name):
                await run.encode(command.plan)
        else:
            await run.encode(command.plan)
        return command, second_pass

    command, second_pass = await run.inputs.guarded(read_and_encode())
    loudness = await normalized_figures(command.plan, second_pass)
    run.progress.stage = S.JOB_STAGE_PACKAGING
    renditions = await measure_chunk_renditions(out_dir, command.playlists)
    if task.kind == wpb.TASK_KIND_CHUNK and task.chunk.index > 0:
        # fMP4: the output keeps the first chunk's init segment; this chunk's, the same bytes
        # (its digest is reported for the merge to check), is not stored.
        for rendition in renditions:
            if rendition.init_path:
                (out_dir / rendition.init_path).unlink()
    video_file = command.file if task.kind == wpb.TASK_KIND_CHUNK else None
    frames = (await describe_chunk_file(video_file)).frames if video_file else 0
    files = await describe_folder(out_dir)
    run.progress.stage = S.JOB_STAGE_UPLOADING
    await run.store(out_dir, files, replace=False)
    return wpb.ChunkResult(
        files=files,
        notes=[*command.plan.notes, *notes],
        encoded_seconds=command.plan.expected_duration,
        frame_count=frames,
        renditions=[_rendition_message(r) for r in renditions],
        loudness=loudness,
    )


def _piece_command(
    task: wpb.Task,
    location: str,
    out_dir: Path,
    second_pass: SecondPass | None,
    overlays: OverlayDrawing | None,
) -> ChunkCommand:
    if task.kind == wpb.TASK_KIND_AUDIO:
        return build_audio_command(
            input_path=location,
            spec=task.output_spec,
            info=task.input_info,
            out_dir=out_dir,
            timestamp_offset=task.chunk.timestamp_offset_seconds,
            loudness=second_pass,
        )
    chunk = task.chunk
    return build_video_chunk_command(
        input_path=location,
        spec=task.output_spec,
        info=task.input_info,
        out_dir=out_dir,
        window=chunk_window(chunk),
        overlays=overlays,
    )


def chunk_window(chunk: wpb.ChunkRange) -> ChunkWindow:
    """The media builders' view of the chunk range a CHUNK task carries (PlanJob shows the
    same command from the same conversion)."""
    return ChunkWindow(
        index=chunk.index,
        count=chunk.count,
        start=chunk.start_seconds,
        end=chunk.end_seconds,
        first_segment=chunk.first_segment,
        timestamp_offset=chunk.timestamp_offset_seconds,
    )


def _rendition_message(rendition: Rendition) -> wpb.RenditionPart:
    return wpb.RenditionPart(
        name=rendition.name,
        codec=rendition.codec,
        width=rendition.width,
        height=rendition.height,
        frame_rate=rendition.frame_rate,
        segments=[
            wpb.Segment(path=s.path, duration_seconds=s.duration_seconds, size_bytes=s.size_bytes)
            for s in rendition.segments
        ],
        init_path=rendition.init_path,
        init_sha256=rendition.init_sha256,
        timescale=rendition.timescale,
        decode_times=[s.decode_time for s in rendition.segments] if rendition.init_path else [],
        decode_durations=(
            [s.decode_duration for s in rendition.segments] if rendition.init_path else []
        ),
    )
