"""KILN_DISPATCH=db: the tasks table is the queue; workers long-poll ClaimTask."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from ..events.listener import TASKS_CHANNEL
from ..store.models import Task
from ..store.store import Tx
from . import DeadLetterHandler


class QueueDispatch:
    name = "db"

    def __init__(self) -> None:
        # Set when tasks may be claimable: wakes every long-polling ClaimTask of this process.
        self._ready = asyncio.Event()

    async def tasks_ready(self, tx: Tx, tasks: Sequence[Task]) -> None:
        if not tasks:
            return
        # Other replicas' waiting claims hear it through LISTEN (see on_notification).
        tx.notify_at_commit(TASKS_CHANNEL, "", "")
        tx.after_commit(self._ready.set)

    def on_notification(self, _payload: str) -> None:
        self._ready.set()

    async def wait_for_ready(self, timeout: float) -> None:
        """Waits for a wake-up since `arm()`: a task committed between a claim that found
        nothing and this wait is not missed, because the claim armed first."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), timeout=timeout)

    def arm(self) -> None:
        """Forget earlier wake-ups; called right before a claim attempt."""
        self._ready.clear()

    async def start(self, on_dead_letter: DeadLetterHandler) -> None:
        return None

    async def stop(self) -> None:
        return None
