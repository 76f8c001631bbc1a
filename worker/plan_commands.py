"""The FFmpeg runs of a job's tasks, built without running them: what PlanJob shows.

The server cannot import the worker (docs/architecture.md), so the composition root
(kiln_cli) hands it `explain_output`, which calls the very builders a task calls
(worker.media.commands, worker.media.chunks, worker.media.merge) and the input access that
puts its options in front of every `-i` (worker.media.input_access). Nothing is changed in
what the worker runs: a plan is that argv with the paths of one worker's disk turned into
placeholders.

The builders write into the run's folder as they go (a chunk's folder, a merge's concat
list), so each explanation builds in a throwaway folder standing for the task's scratch
folder; its path becomes `{scratch}`, the output folder inside it `{output}`, and the input
as FFmpeg opens it is `{input}` (`{input1}`, ... for concatenated inputs).

What is known only once a task has read or measured something is not guessed: a loudness
first pass's figures, text and audio tracks' files, an image overlay's size. Such a task
gets a note instead of an argv that would not be the one run.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

from kiln.v1 import job_pb2, job_service_pb2
from kiln.worker.v1 import worker_service_pb2 as wpb

from common import qc

from .media.chunks import (
    build_audio_command,
    build_video_chunk_command,
    is_adaptive,
)
from .media.commands import build_command
from .media.errors import MediaError
from .media.input_access import InputAccess
from .media.merge import ChunkFile, build_concat_merge_command
from .media.overlays import OverlayDrawing
from .media.qc import readback_plan
from .media.qc_readback import readback_command
from .tasks.chunk import chunk_window

INPUT = "{input}"
OUTPUT = "{output}"
SCRATCH = "{scratch}"
PLACEHOLDERS = {
    INPUT: "the input as FFmpeg opens it on the worker (a local or staged file, or its URL)",
    "{inputN}": "the N-th input concatenated after it",
    OUTPUT: "the task's output folder on the worker, uploaded under the job's output prefix",
    SCRATCH: "the task's own scratch folder on the worker",
}
# The filter graph options of an argv, whose values PlanCommand.filter_graphs lists.
FILTER_OPTIONS = frozenset({"-filter_complex", "-vf", "-af", "-filter:v", "-filter:a"})
# The worker's input access for a local or staged input (the remote one adds its egress
# proxy, which is the worker's and not shown).
LOCAL_ACCESS = InputAccess()

LOUDNESS_NOTE = (
    "normalizes loudness in two passes: the encode's loudnorm takes the figures the first "
    "pass measures, so its command is known only once that pass has run"
)
TRACKS_NOTE = (
    "the command depends on the files of its text or audio tracks, which the task reads "
    "first: not shown"
)
IMAGE_OVERLAY_NOTE = (
    "an image overlay's scale follows the image's own size, which the task reads first: "
    "the command is not shown"
)
QUALITY_NOTE = "then measures the output against the source (measure_quality)"
QC_NOTE = (
    "then reads the written output back for its quality-control report (docs/qc.md); the "
    "source's clip window is read the same way only when a finding could be the source's"
)
QC_FRAGMENTS_NOTE = (
    "the read-back joins each rung's init and segments into one file first, so its command "
    "is known only once they are written: not shown"
)
# Ladders whose rungs are fMP4 fragments with no playlist FFmpeg reads (DASH, CMAF).
FRAGMENTED_RUNGS = frozenset({job_pb2.OUTPUT_TYPE_DASH, job_pb2.OUTPUT_TYPE_CMAF})
HLS_MERGE_NOTE = "writes the playlists over the chunks' segments; runs no FFmpeg"
MPD_MERGE_NOTE = (
    "writes the MPD over the chunks' fMP4 segments (SegmentTimeline from their boxes) and "
    "checks every chunk wrote the same init segment; runs no FFmpeg"
)
CMAF_MERGE_NOTE = (
    "writes the HLS playlists and the MPD over the chunks' fMP4 segments (SegmentTimeline "
    "from their boxes) and checks every chunk wrote the same init segment; runs no FFmpeg"
)

Piece = tuple[wpb.TaskKind, wpb.ChunkRange | None]


def explain_output(
    spec: job_pb2.OutputSpec,
    info: job_pb2.InputInfo,
    pieces: Sequence[Piece],
    *,
    concat_inputs: int = 0,
) -> list[job_service_pb2.PlanTask]:
    """For each (task kind, chunk) of one output, in order, its commands and notes.

    A chunked output's pieces come as the server queues them (AUDIO, CHUNKs) and its MERGE
    last: the merge of an MP4 names the files its pieces made.
    """
    explained: list[job_service_pb2.PlanTask] = []
    piece_files: list[str] = []
    audio_file = ""
    for kind, chunk in pieces:
        task = job_service_pb2.PlanTask()
        if kind == wpb.TASK_KIND_MERGE:
            _explain_merge(task, spec, sorted(piece_files), audio_file)
        elif unknown := _unknown_facts(spec, kind):
            task.notes.extend(unknown)
        else:
            made = _explain_encode(task, kind, chunk, spec, info, concat_inputs)
            if kind == wpb.TASK_KIND_AUDIO:
                audio_file = made
            elif made:
                piece_files.append(made)
        if spec.measure_quality and kind == wpb.TASK_KIND_TRANSCODE:
            task.notes.append(QUALITY_NOTE)
        explained.append(task)
    return explained


def _unknown_facts(spec: job_pb2.OutputSpec, kind: wpb.TaskKind) -> list[str]:
    """Why the encode's argv cannot be shown before the task runs; empty when it can. (The
    AUDIO piece of a chunked output draws no overlay.)"""
    notes = []
    if spec.audio.HasField("loudness") and not spec.HasField("custom"):
        notes.append(LOUDNESS_NOTE)
    if spec.text_tracks or spec.audio_tracks:
        notes.append(TRACKS_NOTE)
    images = any(overlay.HasField("image") for overlay in spec.overlays)
    if images and kind != wpb.TASK_KIND_AUDIO:
        notes.append(IMAGE_OVERLAY_NOTE)
    return notes


def _explain_encode(
    task: job_service_pb2.PlanTask,
    kind: wpb.TaskKind,
    chunk: wpb.ChunkRange | None,
    spec: job_pb2.OutputSpec,
    info: job_pb2.InputInfo,
    concat_inputs: int,
) -> str:
    """Fills task with the encode of a TRANSCODE, CHUNK or AUDIO task; the file a piece
    of a progressive output leaves for the merge, relative to the output folder."""
    overlays = (
        OverlayDrawing(overlays=list(spec.overlays), images=[])
        if spec.overlays and kind != wpb.TASK_KIND_AUDIO
        else None
    )
    with tempfile.TemporaryDirectory(prefix="kiln-plan-") as folder:
        scratch = Path(folder)
        out_dir = scratch / "out"
        out_dir.mkdir()
        made = ""
        try:
            if kind == wpb.TASK_KIND_TRANSCODE or chunk is None:
                argv = build_command(
                    input_path=INPUT,
                    spec=spec,
                    info=info,
                    out_dir=out_dir,
                    extra_inputs=[(f"{{input{n}}}", info) for n in range(1, concat_inputs + 1)],
                    overlays=overlays,
                ).argv
            elif kind == wpb.TASK_KIND_AUDIO:
                command = build_audio_command(
                    input_path=INPUT,
                    spec=spec,
                    info=info,
                    out_dir=out_dir,
                    timestamp_offset=chunk.timestamp_offset_seconds,
                )
                argv, made = command.plan.argv, _relative(command.file, out_dir)
            else:
                command = build_video_chunk_command(
                    input_path=INPUT,
                    spec=spec,
                    info=info,
                    out_dir=out_dir,
                    window=chunk_window(chunk),
                    overlays=overlays,
                )
                argv, made = command.plan.argv, _relative(command.file, out_dir)
        except MediaError as error:
            task.notes.append(f"the task would fail: {error.code}: {error.message}")
            return ""
        task.commands.append(_command(LOCAL_ACCESS.apply(argv), scratch))
        if kind == wpb.TASK_KIND_TRANSCODE and qc.is_checked(spec):
            _explain_qc(task, spec, info, scratch, out_dir)
    return made


def _explain_qc(
    task: job_service_pb2.PlanTask,
    spec: job_pb2.OutputSpec,
    info: job_pb2.InputInfo,
    scratch: Path,
    out_dir: Path,
) -> None:
    """The quality-control read-back the task runs once the output is written
    (worker.media.qc), from the same plan; the source's read only happens on a finding."""
    task.notes.append(QC_NOTE)
    if spec.type in FRAGMENTED_RUNGS:
        # Each rung is read from its init and segments joined, which only exist once written.
        task.notes.append(QC_FRAGMENTS_NOTE)
        return
    work_dir = scratch / "qc"
    work_dir.mkdir()
    plan = readback_plan(spec, info, out_dir, work_dir)
    task.commands.append(_command(LOCAL_ACCESS.apply(readback_command(plan.readings)), scratch))


def _explain_merge(
    task: job_service_pb2.PlanTask, spec: job_pb2.OutputSpec, pieces: list[str], audio: str
) -> None:
    """A progressive output's merge joins the pieces fetched into {scratch}/pieces, as
    worker.tasks.merge does (run without input access: it reads only its own files)."""
    if is_adaptive(spec):
        notes = {
            job_pb2.OUTPUT_TYPE_DASH: MPD_MERGE_NOTE,
            job_pb2.OUTPUT_TYPE_CMAF: CMAF_MERGE_NOTE,
        }
        task.notes.append(notes.get(spec.type, HLS_MERGE_NOTE))
        return
    if not pieces:
        return
    with tempfile.TemporaryDirectory(prefix="kiln-plan-") as folder:
        scratch = Path(folder)
        work = scratch / "pieces"
        work.mkdir()
        plan = build_concat_merge_command(
            chunks=[ChunkFile(work / Path(piece).name, 0, Fraction(0)) for piece in pieces],
            audio=work / Path(audio).name if audio else None,
            work_dir=work,
            output=scratch / "out" / "output.mp4",
        )
        task.commands.append(_command(plan.argv, scratch))


def _command(argv: list[str], scratch: Path) -> job_service_pb2.PlanCommand:
    """argv with the throwaway folder's paths as placeholders, and its filter graphs."""
    folder = str(scratch)
    shown = [
        argument.replace(f"{folder}/out", OUTPUT).replace(folder, SCRATCH) for argument in argv
    ]
    graphs = [
        shown[position + 1]
        for position, argument in enumerate(shown[:-1])
        if argument in FILTER_OPTIONS
    ]
    return job_service_pb2.PlanCommand(argv=shown, filter_graphs=graphs)


def _relative(path: Path | None, out_dir: Path) -> str:
    return path.relative_to(out_dir).as_posix() if path is not None else ""
