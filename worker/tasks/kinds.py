"""Which function runs each kind of task, what metrics and logs call it, and the stage it is in
until it says otherwise (the stage its heartbeat reports first and its failures name)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from kiln.v1 import job_pb2
from kiln.worker.v1 import worker_service_pb2 as wpb

from ..reporter import TaskResult
from .chunk import encode_piece
from .merge import merge_pieces
from .probe import probe_input
from .run import TaskRun
from .transcode import transcode

S = job_pb2.JobStage


@dataclass(frozen=True)
class KindRunner:
    name: str
    stage: job_pb2.JobStage
    run: Callable[[TaskRun], Awaitable[TaskResult]]


TRANSCODE = KindRunner("transcode", S.JOB_STAGE_TRANSCODING, transcode)
KINDS = {
    wpb.TASK_KIND_PROBE: KindRunner("probe", S.JOB_STAGE_PROBING, probe_input),
    wpb.TASK_KIND_TRANSCODE: TRANSCODE,
    wpb.TASK_KIND_CHUNK: KindRunner("chunk", S.JOB_STAGE_TRANSCODING, encode_piece),
    wpb.TASK_KIND_AUDIO: KindRunner("audio", S.JOB_STAGE_TRANSCODING, encode_piece),
    wpb.TASK_KIND_MERGE: KindRunner("merge", S.JOB_STAGE_MERGING, merge_pieces),
}


def kind_of(task: wpb.Task) -> KindRunner:
    # A kind this worker does not know (an older worker, a newer server) runs as a transcode,
    # as the worker always has.
    return KINDS.get(task.kind, TRANSCODE)
