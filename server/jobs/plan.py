"""PlanJob: what Create would make of a request, explained, with nothing written or queued.

The request goes through Create's own checks (Admission.check: the same violations, the
same code); the tasks are the ones the probe's outcome queues (task_plan.output_pieces over
chunk_plan.plan_chunks), the cost is the estimate the probe records (pricing.priced_output),
and each task's FFmpeg runs come from the worker's own command builders, which the
composition root hands in as `ExplainOutput` (the server never imports the worker).

The input is not read: the caller states what probing it finds (PlanJobRequest.input), or
the plan is made for an assumed input (domain.input_facts.ASSUMED_INPUT) and says so. Ids
and paths are placeholders; no root, host, bucket or credential of the server is in it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from kiln.v1 import job_pb2, job_service_pb2
from kiln.worker.v1 import worker_service_pb2

from ..domain import pricing
from ..domain.errors import FailedPrecondition, InvalidArgument
from ..domain.input_facts import ASSUMED_INPUT, input_fact_violations
from ..domain.input_fit import input_problem
from ..domain.pricing_table import PricingTable
from ..domain.states import TaskKind
from ..store.store import Store
from .chunk_plan import ChunkSettings, output_seconds, plan_chunks
from .create import Admission, idempotency_key
from .task_plan import output_pieces

Piece = tuple[worker_service_pb2.TaskKind, worker_service_pb2.ChunkRange | None]
PROBE_NOTE = "reads the input's streams and duration with ffprobe"


class ExplainOutput(Protocol):
    """The worker's worker.plan_commands.explain_output: for each (task kind, chunk) of one
    output, a PlanTask holding only its commands and notes."""

    def __call__(
        self,
        spec: job_pb2.OutputSpec,
        info: job_pb2.InputInfo,
        pieces: Sequence[Piece],
        *,
        concat_inputs: int = 0,
    ) -> list[job_service_pb2.PlanTask]: ...


class JobPlanning:
    def __init__(
        self,
        store: Store,
        admission: Admission,
        *,
        chunking: ChunkSettings,
        table: PricingTable,
        explain: ExplainOutput | None,
        placeholders: dict[str, str] | None = None,
    ) -> None:
        self.store = store
        self.admission = admission
        self.chunking = chunking
        self.table = table
        self.explain = explain
        self.placeholders = placeholders or {}

    async def plan(
        self, organization_id: str, request: job_service_pb2.PlanJobRequest
    ) -> job_service_pb2.PlanJobResponse:
        if self.explain is None:
            raise FailedPrecondition("this server was started without the worker's builders")
        create = request.request
        idempotency_key(create, "")
        checked = await self.admission.check(organization_id, create)
        # After Create's checks, as Create's answer to a bad request comes first.
        info = request.input if request.HasField("input") else ASSUMED_INPUT
        if violations := input_fact_violations(info):
            raise InvalidArgument(violations)
        specs = checked.specs(create)
        async with self.store.reading() as tx:
            currency = await tx.keys.organization_currency(organization_id)

        response = job_service_pb2.PlanJobResponse(input=info, placeholders=self.placeholders)
        probe = response.tasks.add(index=0, kind=job_service_pb2.PLAN_TASK_KIND_PROBE)
        probe.notes.append(PROBE_NOTE)
        if (problem := input_problem(info, specs)) is not None:
            probe.notes.append(f"the job fails here: {problem.code}: {problem.message}")
            return response
        priority = create.priority or job_pb2.PRIORITY_STANDARD
        total = 0
        for position, spec in enumerate(specs):
            seconds = output_seconds(spec, info.duration_seconds)
            cost, _ = pricing.priced_output(spec, info, seconds, priority, self.table)
            total += cost
            decision = plan_chunks(
                spec, info, self.chunking, concatenated=bool(create.concat_input_urls)
            )
            response.outputs.add(
                output_index=position,
                estimated_cost=job_pb2.Money(micros=cost, currency=currency),
                chunked=bool(decision.chunks),
                notes=[decision.note] if decision.note else [],
            )
            pieces: list[tuple[TaskKind, worker_service_pb2.ChunkRange | None]] = list(
                output_pieces(decision)
            )
            if decision.chunks:
                pieces.append((TaskKind.MERGE, None))
            explained = self.explain(
                spec,
                info,
                [(_worker_kind(kind), chunk) for kind, chunk in pieces],
                concat_inputs=len(create.concat_input_urls),
            )
            first = len(response.tasks)
            for (kind, chunk), described in zip(pieces, explained, strict=True):
                task = response.tasks.add(
                    index=len(response.tasks),
                    kind=job_service_pb2.PlanTaskKind.Value(f"PLAN_TASK_KIND_{kind}"),
                    output_index=position,
                    # The merge waits for the output's pieces; every other task for the probe.
                    after=range(first, len(response.tasks)) if kind == TaskKind.MERGE else [0],
                )
                if chunk is not None:
                    task.chunk.CopyFrom(_chunk(chunk, kind))
                task.MergeFrom(described)
        response.estimated_cost.CopyFrom(job_pb2.Money(micros=total, currency=currency))
        return response


def _worker_kind(kind: TaskKind) -> worker_service_pb2.TaskKind:
    return worker_service_pb2.TaskKind.Value(f"TASK_KIND_{kind}")


def _chunk(chunk: worker_service_pb2.ChunkRange, kind: TaskKind) -> job_service_pb2.PlanChunk:
    if kind == TaskKind.AUDIO:
        # The audio is encoded whole; only the chunk count says what it goes with.
        return job_service_pb2.PlanChunk(count=chunk.count)
    return job_service_pb2.PlanChunk(
        index=chunk.index,
        count=chunk.count,
        start_seconds=chunk.start_seconds,
        end_seconds=chunk.end_seconds,
    )
