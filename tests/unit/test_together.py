"""worker.media.together: steps run at once, all of them or none.

The steps are coroutines that wait on events the test sets, so what runs at the same time is
decided by the test, not by a clock.
"""

from __future__ import annotations

import asyncio
import gc
import warnings

import pytest

from worker.media.errors import ENCODE_FAILED, MediaError
from worker.media.together import both, each


async def test_each_keeps_the_order_of_the_steps_not_of_their_ends() -> None:
    second_done = asyncio.Event()

    async def first() -> str:
        await second_done.wait()  # ends after the second
        return "first"

    async def second() -> str:
        second_done.set()
        return "second"

    assert await each([first(), second()], at_once=2) == ["first", "second"]


async def test_each_runs_no_more_than_at_once_steps_at_a_time() -> None:
    running = 0
    most = 0
    release = asyncio.Event()

    async def step(number: int) -> int:
        nonlocal running, most
        running += 1
        most = max(most, running)
        if running == 2:
            release.set()
        await release.wait()
        running -= 1
        return number

    assert await each((step(n) for n in range(5)), at_once=2) == [0, 1, 2, 3, 4]
    assert most == 2


async def test_a_failing_step_cancels_the_others_and_is_raised_as_it_is() -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def slow() -> None:
        started.set()
        try:
            await asyncio.Event().wait()  # never set: only a cancel ends it
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def failing() -> None:
        await started.wait()
        raise MediaError(ENCODE_FAILED, "v1/index.m3u8 lists no segments")

    with pytest.raises(MediaError) as raised:
        await both(slow(), failing())
    assert raised.value.code == ENCODE_FAILED
    # Raised only once the other step has ended (its process would be reaped by then).
    assert cancelled.is_set()


async def test_steps_cancelled_before_their_turn_never_warn_of_an_unawaited_coroutine() -> None:
    started = asyncio.Event()

    async def blocking() -> int:
        started.set()
        await asyncio.Event().wait()  # never set: the caller is cancelled meanwhile
        return 0

    async def waiting() -> int:
        return 1

    async def run_them() -> None:
        # Created here, so that nothing but the tasks of `each` refers to the steps.
        await each([blocking(), waiting(), waiting()], at_once=1)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        caller = asyncio.ensure_future(run_them())
        await started.wait()
        caller.cancel()  # as a task is when it must stop: two steps never had their turn
        await asyncio.wait({caller})
        assert caller.cancelled()
        del caller
        gc.collect()  # an unawaited coroutine warns when it is collected
    assert [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)] == []


async def test_no_steps_is_no_results() -> None:
    assert await each([], at_once=4) == []


async def test_a_cancelled_caller_waits_for_each_step_to_finish_its_clean_up() -> None:
    # A step whose clean-up waits (run_ffmpeg reaping its killed process) beside one that ends
    # at once when cancelled: the caller's cancel reaches both, and the second step's quick end
    # must not get the first cancelled again, which would cut its clean-up short.
    started = asyncio.Event()
    cleaning = asyncio.Event()
    reaped = asyncio.Event()
    cleaned_up = False

    async def step() -> None:
        nonlocal cleaned_up
        started.set()
        try:
            await asyncio.Event().wait()  # never set: only a cancel ends it
        finally:
            cleaning.set()
            await asyncio.shield(reaped.wait())
            cleaned_up = True

    caller = asyncio.ensure_future(both(step(), asyncio.Event().wait()))
    await started.wait()
    caller.cancel()
    await cleaning.wait()
    reaped.set()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert cleaned_up
