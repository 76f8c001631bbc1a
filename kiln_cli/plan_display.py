"""How `kiln jobs plan` prints a plan: the tasks in claim order, then each FFmpeg argument
list one argument a line (copyable, and no argument hides inside another's quoting)."""

from __future__ import annotations

from kiln.v1 import job_service_pb2

from .common import stdout
from .job_display import micro_money
from .watching import short_enum


def _line(text: str) -> None:
    # Printed as is: an argument such as `-c:v:0` must not become rich markup or an emoji
    # (`:v:` is one).
    stdout.print(text, markup=False, emoji=False)


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
    _line(f"input     {info.duration_seconds:g}s: {streams}")
    _line(f"estimated {micro_money(plan.estimated_cost)}")
    for output in plan.outputs:
        chunked = "  chunked" if output.chunked else ""
        _line(
            f"output {output.output_index}  {micro_money(output.estimated_cost)}{chunked}",
        )
        for note in output.notes:
            _line(f"  note: {note}")
    _line("tasks")
    for task in plan.tasks:
        _line(f"  {task_title(task)}")
    for task in plan.tasks:
        _line("")
        _line(task_title(task))
        for note in task.notes:
            _line(f"  note: {note}")
        for number, command in enumerate(task.commands, start=1):
            _line(f"  command {number}:")
            for argument in command.argv:
                _line(f"    {argument}")
    if plan.placeholders:
        _line("")
        for name, meaning in sorted(plan.placeholders.items()):
            _line(f"{name}  {meaning}")
