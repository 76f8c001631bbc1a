"""How `kiln jobs plan` prints a plan: the tasks in claim order, then each FFmpeg argument
list one argument a line (copyable, and no argument hides inside another's quoting)."""

from __future__ import annotations

from kiln.v1 import job_service_pb2

from .common import stdout
from .job_display import micro_money
from .watching import short_enum


def task_title(task: job_service_pb2.PlanTask) -> str:
    kind = short_enum(job_service_pb2.PlanTaskKind, task.kind, "PLAN_TASK_KIND_")
    parts = [f"task {task.index}", kind]
    if task.HasField("output_index"):
        parts.append(f"output {task.output_index}")
    if task.kind == job_service_pb2.PLAN_TASK_KIND_CHUNK:
        chunk = task.chunk
        parts.append(
            f"chunk {chunk.index + 1}/{chunk.count} {chunk.start_seconds:g}s-{chunk.end_seconds:g}s"
        )
    if task.after:
        parts.append("after " + ",".join(str(index) for index in task.after))
    return "  ".join(parts)


def show_plan(plan: job_service_pb2.PlanJobResponse) -> None:
    info = plan.input
    streams = ", ".join(
        f"{s.kind} {s.codec} {s.width}x{s.height} {s.frame_rate:g}fps"
        if s.kind == "video"
        else f"{s.kind} {s.codec}"
        for s in info.streams
    )
    stdout.print(f"input     {info.duration_seconds:g}s: {streams}", markup=False)
    stdout.print(f"estimated {micro_money(plan.estimated_cost)}", markup=False)
    for output in plan.outputs:
        chunked = "  chunked" if output.chunked else ""
        stdout.print(
            f"output {output.output_index}  {micro_money(output.estimated_cost)}{chunked}",
            markup=False,
        )
        for note in output.notes:
            stdout.print(f"  note: {note}", markup=False)
    stdout.print("tasks", markup=False)
    for task in plan.tasks:
        stdout.print(f"  {task_title(task)}", markup=False)
    for task in plan.tasks:
        stdout.print("", markup=False)
        stdout.print(task_title(task), markup=False)
        for note in task.notes:
            stdout.print(f"  note: {note}", markup=False)
        for number, command in enumerate(task.commands, start=1):
            stdout.print(f"  command {number}:", markup=False)
            for argument in command.argv:
                stdout.print(f"    {argument}", markup=False)
    if plan.placeholders:
        stdout.print("", markup=False)
        for name, meaning in sorted(plan.placeholders.items()):
            stdout.print(f"{name}  {meaning}", markup=False)
