"""The fleet as operators see it: what each worker announced, what it runs now, and whether
it is still heard from.

A worker announces itself at start, every third of a lease while it runs, and when it
starts draining (WorkerService/AnnounceWorker). One that has not been heard from for a
whole lease is LOST: by then the reaper is taking its tasks back too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from kiln.worker.v1 import worker_service_pb2 as wpb

from common.speed_classes import known_classes

from ..domain.errors import FieldViolation, InvalidArgument
from ..domain.states import WorkerState
from ..store.database import now
from ..store.store import Store
from ..store.workers import Announcement, WorkerRecord

# A worker says these of itself; LOST is the server's judgement.
ANNOUNCED_STATES = {
    wpb.WORKER_STATE_ACTIVE: WorkerState.ACTIVE,
    wpb.WORKER_STATE_DRAINING: WorkerState.DRAINING,
}

MAX_ID_LENGTH = 200
MAX_HOST_LENGTH = 255
MAX_VERSION_LENGTH = 64
MAX_CAPACITY = 1024
MAX_ENCODERS = 500
MAX_ENCODER_NAME_LENGTH = 64
MAX_SPEEDS = 64
# Media seconds per wall second. Even a thumbnail of a long input is not a thousand times
# faster than real time; a figure above this (or not above 0) is a broken clock or a lie,
# and one such figure would make every ETA of that kind of output wrong.
MAX_REALTIME_FACTOR = 1000.0
MAX_SAMPLES = 1000


@dataclass(frozen=True)
class FleetMember:
    """A worker with the state operators act on: ACTIVE, DRAINING or LOST."""

    record: WorkerRecord
    state: WorkerState


def announcement_from(request: wpb.AnnounceWorkerRequest) -> Announcement:
    """The announcement as stored, or INVALID_ARGUMENT naming every bad field."""
    violations: list[FieldViolation] = []

    def text(field: str, value: str, limit: int, required: bool = True) -> None:
        if required and not value:
            violations.append(FieldViolation(field, "required"))
        elif len(value) > limit:
            violations.append(FieldViolation(field, f"at most {limit} characters"))

    text("worker_id", request.worker_id, MAX_ID_LENGTH)
    if "/" in request.worker_id:
        violations.append(FieldViolation("worker_id", "must not contain '/' (slots add it)"))
    text("host", request.host, MAX_HOST_LENGTH)
    text("version", request.version, MAX_VERSION_LENGTH, required=False)
    if not 1 <= request.capacity <= MAX_CAPACITY:
        violations.append(FieldViolation("capacity", f"between 1 and {MAX_CAPACITY} slots"))
    kinds = []
    for index, kind in enumerate(request.task_kinds):
        if kind == wpb.TASK_KIND_UNSPECIFIED or kind not in wpb.TaskKind.values():
            violations.append(FieldViolation(f"task_kinds[{index}]", "not a task kind"))
        else:
            kinds.append(wpb.TaskKind.Name(kind).removeprefix("TASK_KIND_"))
    if len(request.encoders) > MAX_ENCODERS:
        violations.append(FieldViolation("encoders", f"at most {MAX_ENCODERS} encoders"))
    for index, encoder in enumerate(request.encoders[:MAX_ENCODERS]):
        text(f"encoders[{index}]", encoder, MAX_ENCODER_NAME_LENGTH)
    if request.state not in ANNOUNCED_STATES:
        violations.append(FieldViolation("state", "ACTIVE or DRAINING"))
    speeds = speeds_from(request.speeds, violations)
    if violations:
        raise InvalidArgument(violations)
    return Announcement(
        worker_id=request.worker_id,
        host=request.host,
        version=request.version,
        capacity=request.capacity,
        task_kinds=sorted(set(kinds)),
        encoders=sorted(set(request.encoders)),
        state=ANNOUNCED_STATES[request.state],
        speeds=speeds,
    )


def speeds_from(
    reported: Sequence[wpb.EncodeSpeed], violations: list[FieldViolation]
) -> dict[str, float]:
    """{speed class: realtime factor}; each bad entry adds a violation instead."""
    if len(reported) > MAX_SPEEDS:
        violations.append(FieldViolation("speeds", f"at most {MAX_SPEEDS} speeds"))
        return {}
    classes = known_classes()
    speeds: dict[str, float] = {}
    for index, speed in enumerate(reported):
        where = f"speeds[{index}]"
        factor = speed.realtime_factor
        if speed.speed_class not in classes:
            violations.append(FieldViolation(f"{where}.speed_class", "not a speed class"))
        elif speed.speed_class in speeds:
            violations.append(FieldViolation(f"{where}.speed_class", "given twice"))
        if not (math.isfinite(factor) and 0 < factor <= MAX_REALTIME_FACTOR):
            violations.append(
                FieldViolation(
                    f"{where}.realtime_factor", f"above 0 and at most {MAX_REALTIME_FACTOR:g}"
                )
            )
        if not 1 <= speed.samples <= MAX_SAMPLES:
            violations.append(FieldViolation(f"{where}.samples", f"between 1 and {MAX_SAMPLES}"))
        speeds[speed.speed_class] = factor
    return speeds


class Fleet:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def announce(self, request: wpb.AnnounceWorkerRequest) -> None:
        announcement = announcement_from(request)
        async with self.store.transaction() as tx:
            await tx.workers.announce(announcement)


def judged(
    records: list[WorkerRecord], lease_seconds: float, moment: datetime | None = None
) -> list[FleetMember]:
    """Each worker with its state: LOST once silent for a whole lease before `moment`
    (now unless given: /metrics passes its own clock, which tests set)."""
    silent_since = (moment or now()) - timedelta(seconds=lease_seconds)
    return [
        FleetMember(
            record,
            WorkerState(record.state)
            if record.last_contact_at >= silent_since
            else WorkerState.LOST,
        )
        for record in records
    ]
