"""A probe task: ffprobe the job's input, and say whether its origin serves byte ranges."""

from __future__ import annotations

from kiln.v1 import job_pb2

from .run import TaskRun


async def probe_input(run: TaskRun) -> job_pb2.InputInfo:
    async def read() -> job_pb2.InputInfo:
        location, ranges = await run.locate(run.task.input_url, run.scratch, known_ranges=None)
        info = await run.probe(location)
        info.supports_byte_ranges = ranges
        return info

    return await run.inputs.guarded(read())
