"""The ETA of work that has no rate of its own yet: from the queue ahead and the fleet's speed.

Workers announce how fast their recent encodes ran per kind of output (worker/speeds.py,
common/speed_classes.py). The fleet's speed for a kind is the median over the workers still
heard from; its slots are the ACTIVE workers' slots (a draining worker takes nothing new).

The queue is then played forward: every slot is free at once or when its running task
ends (a running output with an estimate from its own rate holds its slot that long, so what
a queued output is told agrees with what the running one says); each queued encoding task,
in the order workers claim them, takes the slot that frees first and holds it for its media
seconds over the speed of its kind. An output ends when its last task does.

What is not counted: probes and merges (short), a job's outputs before its probe (their
length is unknown), and a kind no live worker has measured yet. Such a kind makes its own
output, and everything queued after it, unknown (absent), never a guess: a slot held for an
unknown time leaves every later start unknown too. An AUDIO piece of a chunked output takes
no time when "audio" is unmeasured: it is short beside the video of the same output.
"""

from __future__ import annotations

import heapq
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from kiln.v1 import job_pb2
from kiln.worker.v1 import worker_service_pb2

from common.speed_classes import AUDIO, speed_class

from ..domain.states import OutputStatus, TaskKind, WorkerState
from ..store.queue_outlook import QueuedWork
from ..store.store import Store, Tx
from . import eta
from .chunk_plan import output_seconds
from .fleet import FleetMember, judged

# Encoding tasks read, running and queued: a queue longer than this leaves the outputs
# beyond it without an estimate rather than making every Get read the whole queue.
QUEUE_READ_LIMIT = 500


@dataclass(frozen=True)
class FleetSpeed:
    """The fleet's slots for new work and its speed per kind of output."""

    slots: int
    realtime_factors: Mapping[str, float]


def fleet_speed(members: Sequence[FleetMember]) -> FleetSpeed:
    heard = [member for member in members if member.state != WorkerState.LOST]
    slots = sum(m.record.capacity for m in heard if m.state == WorkerState.ACTIVE)
    figures: dict[str, list[float]] = {}
    for member in heard:
        for kind, factor in member.record.speeds.items():
            figures.setdefault(kind, []).append(factor)
    return FleetSpeed(slots, {kind: statistics.median(f) for kind, f in figures.items()})


def task_seconds(work: QueuedWork, speed: FleetSpeed) -> float | None:
    """Seconds the task has left at the fleet's speed for its kind; None when unknown."""
    if not work.input_info:
        return None
    spec = job_pb2.OutputSpec.FromString(work.spec)
    info = job_pb2.InputInfo.FromString(work.input_info)
    length = output_seconds(spec, info.duration_seconds)
    done = work.task_progress
    if work.kind == TaskKind.AUDIO:
        factor = speed.realtime_factors.get(AUDIO)
        if factor is None:
            return 0.0
    else:
        factor = speed.realtime_factors.get(speed_class(spec, info))
        if factor is None:
            return None
        if work.kind == TaskKind.CHUNK:
            piece = worker_service_pb2.ChunkRange.FromString(work.chunk or b"")
            length = max(piece.end_seconds - piece.start_seconds, 0.0)
        else:
            done = work.output_progress
    return length * (1 - min(max(done, 0.0), 100.0) / 100) / factor


def output_finishes(
    queue: Sequence[QueuedWork], speed: FleetSpeed, moment: datetime
) -> dict[str, float | None]:
    """{output id: seconds until its last task ends (None: unknown)} for every output with
    a task in `queue` (running tasks first, then queued ones in claim order)."""
    running = sum(1 for work in queue if work.leased)
    slots = max(speed.slots, running)
    if slots == 0:
        return {}
    free = [0.0] * slots
    ends: dict[str, float | None] = {}
    blind = False
    for work in queue:
        left = task_seconds(work, speed)
        if work.leased:
            rate = eta.output_eta(
                OutputStatus.PROCESSING, work.output_progress, work.running_since, moment
            )
            if rate is not None and (work.kind == TaskKind.TRANSCODE or left is None):
                left = rate
        blind = blind or left is None
        if blind or left is None or ends.get(work.output_id, 0.0) is None:
            ends[work.output_id] = None
            continue
        end = heapq.heappop(free) + left
        heapq.heappush(free, end)
        ends[work.output_id] = max(ends.get(work.output_id) or 0.0, end)
    return {output: None if end is None else round(end, 1) for output, end in ends.items()}


class QueueEta:
    """Reads the fleet and the queue when an answer needs them (see eta.needs_queue)."""

    def __init__(self, store: Store, lease_seconds: float) -> None:
        self.store = store
        self.lease_seconds = lease_seconds

    async def estimates(self, moment: datetime, tx: Tx | None = None) -> dict[str, float | None]:
        """Every queued or running output's estimate, read in `tx` (or a read of its own)."""
        if tx is not None:
            return await self._estimates(tx, moment)
        async with self.store.reading() as reading:
            return await self._estimates(reading, moment)

    async def _estimates(self, tx: Tx, moment: datetime) -> dict[str, float | None]:
        members = judged(await tx.workers.list_workers(), self.lease_seconds, moment)
        speed = fleet_speed(members)
        if not speed.realtime_factors:
            return {}
        queue = await tx.queue_outlook.work(QUEUE_READ_LIMIT)
        return output_finishes(queue, speed, moment)
