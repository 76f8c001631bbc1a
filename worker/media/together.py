"""Independent steps run at once: all of them, or none once one fails.

The steps here are ffprobe and ffmpeg runs after an encode: each is a process that mostly waits
on its own start-up or on one core, so running them side by side shortens the serial tail of a
task on a machine with a core to spare. asyncio.TaskGroup would do it, but it wraps the failure
in an ExceptionGroup; the callers want the step's own MediaError.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Iterable, Sequence
from typing import TypeVar

A = TypeVar("A")
B = TypeVar("B")
T = TypeVar("T")


async def both(first: Awaitable[A], second: Awaitable[B]) -> tuple[A, B]:
    """The results of two steps run at once (see each)."""
    first_task, second_task = asyncio.ensure_future(first), asyncio.ensure_future(second)
    await _all_or_none([first_task, second_task])
    return first_task.result(), second_task.result()


async def each(steps: Iterable[Awaitable[T]], *, at_once: int) -> list[T]:
    """The results of `steps` in their order, at most `at_once` running at a time. The first
    to fail cancels the others and its exception is raised as it is, once every other step has
    ended (a cancelled step's process is killed and reaped by the step itself)."""
    limit = asyncio.Semaphore(at_once)

    async def limited(step: Awaitable[T]) -> T:
        try:
            async with limit:
                return await step
        finally:
            if inspect.iscoroutine(step):
                step.close()  # one cancelled before its turn was never started: no warning

    tasks = [asyncio.ensure_future(limited(step)) for step in steps]
    await _all_or_none(tasks)
    return [task.result() for task in tasks]


async def _all_or_none(tasks: Sequence[asyncio.Future]) -> None:
    if not tasks:
        return
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            # Not twice: when the caller is cancelled, gather has cancelled every step already,
            # and a second cancel would cut short a step's clean-up (run_ffmpeg waiting for its
            # killed process to be reaped), leaving the process to outlive this call.
            if not (isinstance(task, asyncio.Task) and task.cancelling()):
                task.cancel()
        await asyncio.wait(tasks)
        for task in tasks:
            if not task.cancelled():
                task.exception()  # retrieved: asyncio would log it as never retrieved
        raise
