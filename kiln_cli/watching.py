"""`kiln jobs watch`: follow a job's Watch stream to its end, resuming after drops.

A dropped connection, or a stream ended with UNAVAILABLE (a server restarting says "watch
again with after_sequence=N"), is followed by a new Watch with after_sequence = the last
sequence seen: the server replays what was missed with no gap and no repeat. Consecutive
failures back off (0.25 s doubling to 4 s) and give up after MAX_FAILURES; any event resets
the count. Events at or below the last sequence are never shown twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
from kiln.v1 import job_pb2, job_service_pb2
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
)
from rich.text import Text

from .client import JOB_SERVICE, ApiError, Client, parse
from .common import json_line

MAX_FAILURES = 8
RETRYABLE_CODES = {"unavailable", "deadline_exceeded", "aborted"}
TERMINAL = {
    job_pb2.JOB_STATUS_COMPLETED,
    job_pb2.JOB_STATUS_PARTIAL,
    job_pb2.JOB_STATUS_FAILED,
    job_pb2.JOB_STATUS_REJECTED,
    job_pb2.JOB_STATUS_CANCELED,
}

EventHandler = Callable[[dict[str, Any], job_service_pb2.WatchResponse], None]


def short_enum(enum: Any, value: int, prefix: str) -> str:
    name = enum.Name(value) if value else ""
    return name.removeprefix(prefix).lower().replace("_", " ")


def eta_text(message: Any) -> str:
    """The server's estimate of a Job, Output or progress event ("about 12 s left"); ""
    when it has none (unknown is never shown as 0)."""
    if not message.HasField("eta_seconds"):
        return ""
    seconds = round(message.eta_seconds)
    if seconds < 90:
        return f"about {seconds} s left"
    if seconds < 90 * 60:
        return f"about {round(seconds / 60)} min left"
    return f"about {seconds / 3600:.1f} h left"


def status_name(value: int) -> str:
    return short_enum(job_pb2.JobStatus, value, "JOB_STATUS_")


def stage_name(value: int) -> str:
    return short_enum(job_pb2.JobStage, value, "JOB_STAGE_")


def follow(
    client: Client,
    job_id: str,
    on_event: EventHandler,
    *,
    on_retry: Callable[[str, int | None, int], None] | None = None,
    max_failures: int = MAX_FAILURES,
    sleep: Callable[[float], None] = time.sleep,
) -> job_pb2.Job:
    """Watch `job_id` until it is terminal and return the terminal job."""
    last: int | None = None
    failures = 0
    while True:
        try:
            for payload in client.watch(job_id, last):
                event = parse(payload, job_service_pb2.WatchResponse)
                failures = 0
                kind = event.WhichOneof("event")
                if kind == "heartbeat":
                    continue
                if kind == "completed":
                    # A fresh Watch of a finished job sends its snapshot and completed event
                    # with the same sequence; the completed event is shown either way.
                    last = max(last or 0, event.sequence)
                    on_event(payload, event)
                    return event.completed.job
                if kind != "snapshot" and last is not None and event.sequence <= last:
                    continue
                last = event.sequence
                on_event(payload, event)
            # A clean end without a completed event: a resumed Watch of a job that was
            # already terminal. Its state is one Get away.
            job = parse(
                client.call(JOB_SERVICE, "Get", job_service_pb2.GetRequest(id=job_id)),
                job_service_pb2.GetResponse,
            ).job
            if job.status in TERMINAL:
                return job
            reason = "the stream ended before the job did"
        except ApiError as error:
            if error.code not in RETRYABLE_CODES:
                raise
            reason = f"{error.code}: {error.message}"
        except httpx.HTTPError as error:
            reason = f"connection lost: {error or type(error).__name__}"
        failures += 1
        if failures > max_failures:
            raise ApiError(
                "unavailable", f"gave up watching {job_id} after {max_failures} retries: {reason}"
            )
        if on_retry:
            on_retry(reason, last, failures)
        sleep(min(0.25 * 2 ** (failures - 1), 4.0))


class JsonLines:
    """--json: one event per line, exactly as the server sent it."""

    def __call__(self, payload: dict[str, Any], _event: job_service_pb2.WatchResponse) -> None:
        json_line(payload)


class SpeedColumn(ProgressColumn):
    """Encoding speed: times real time when the input's duration is known, else %/s."""

    def render(self, task: Task) -> Text:
        speed = task.speed
        if not speed or task.finished:
            return Text("", style="progress.data.speed")
        duration = task.fields.get("duration") or 0.0
        if duration:
            return Text(f"{speed * duration / 100:.1f}x", style="progress.data.speed")
        return Text(f"{speed:.1f}%/s", style="progress.data.speed")


def _output_label(output: job_pb2.Output) -> str:
    spec = output.spec
    if spec.preset:
        what = spec.preset
    else:
        what = short_enum(job_pb2.OutputType, spec.type, "OUTPUT_TYPE_")
        resolutions = ",".join(v.resolution for v in spec.video)
        if resolutions:
            what += " " + resolutions
    return f"{output.id} {what}"


class LiveBoard:
    """A rich progress bar for the job and one per output: status, stage, speed, and the
    server's ETA (not one guessed here from the bar's own speed)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=30),
            TextColumn("{task.percentage:>5.1f}%"),
            TextColumn("[bold]{task.fields[status]}[/]"),
            TextColumn("[dim]{task.fields[stage]}[/]"),
            SpeedColumn(),
            TextColumn("[cyan]{task.fields[eta]}[/]"),
            console=console,
            transient=False,
            refresh_per_second=8,
        )
        self.job_task: TaskID | None = None
        self.outputs: dict[str, TaskID] = {}
        self.duration = 0.0
        self.stage = ""

    def __enter__(self) -> LiveBoard:
        self.progress.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.progress.stop()

    def note(self, text: str) -> None:
        self.progress.console.print(text, style="yellow")

    def _job_row(self, job_id: str) -> TaskID:
        if self.job_task is None:
            self.job_task = self.progress.add_task(
                f"job {job_id}", total=100, status="", stage="", duration=0.0, eta=""
            )
        return self.job_task

    def _output_row(self, output: job_pb2.Output) -> TaskID:
        if output.id not in self.outputs:
            self.outputs[output.id] = self.progress.add_task(
                "  " + _output_label(output),
                total=100,
                status="",
                stage="",
                duration=self.duration,
                eta="",
            )
        return self.outputs[output.id]

    def show_job(self, job: job_pb2.Job) -> None:
        if job.input_info.duration_seconds:
            self.duration = job.input_info.duration_seconds
        row = self._job_row(job.id)
        self.stage = stage_name(job.stage)
        self.progress.update(
            row,
            completed=job.progress,
            status=status_name(job.status),
            stage=self.stage,
            duration=self.duration,
            eta=eta_text(job),
        )
        for output in job.outputs:
            self.show_output(output)

    def show_output(self, output: job_pb2.Output) -> None:
        row = self._output_row(output)
        status = short_enum(job_pb2.OutputStatus, output.status, "OUTPUT_STATUS_")
        if output.status == job_pb2.OUTPUT_STATUS_FAILED and output.error.code:
            status += f" ({output.error.code})"
        self.progress.update(
            row,
            completed=output.progress,
            status=status,
            stage=self.stage if output.status == job_pb2.OUTPUT_STATUS_PROCESSING else "",
            duration=self.duration,
            eta=eta_text(output),
        )

    def __call__(self, _payload: dict[str, Any], event: job_service_pb2.WatchResponse) -> None:
        kind = event.WhichOneof("event")
        if kind == "snapshot":
            self.show_job(event.snapshot.job)
        elif kind == "completed":
            self.show_job(event.completed.job)
        elif kind == "status_change" and self.job_task is not None:
            change = event.status_change
            self.stage = stage_name(change.stage)
            self.progress.update(
                self.job_task, status=status_name(change.to_status), stage=self.stage, eta=""
            )
            if change.error.code:
                self.note(f"{change.error.code}: {change.error.message}")
        elif kind == "progress" and self.job_task is not None:
            self.stage = stage_name(event.progress.stage) or self.stage
            self.progress.update(
                self.job_task,
                completed=event.progress.progress,
                stage=self.stage,
                eta=eta_text(event.progress),
            )
        elif kind == "output":
            self.show_output(event.output.output)
