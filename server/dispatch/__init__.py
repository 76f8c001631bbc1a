"""The dispatch seam: the use cases say "these tasks are ready"; a backend carries it.

`db` (the default) leaves ready tasks in the tasks table, where workers long-polling
ClaimTask take them (`FOR UPDATE SKIP LOCKED`, priority then age); the wake-up is
in-process on SQLite and NOTIFY on PostgreSQL, so an idle worker hears of a task within
milliseconds of the commit, with no polling. `pubsub` also writes the ready task to an
outbox in the same transaction and publishes it after the commit; workers receive the
message and claim that task id. Either way the tasks table stays the one truth: a
message is only a hint that a task may be claimable.

Cancellation needs no backend: the worker running a task learns it from the answer to
its next heartbeat (every progress interval, well under a second), wherever it runs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from ..store.models import Task
from ..store.store import Tx

# A dead-lettered task message: (task id, deliveries) -> handled.
DeadLetterHandler = Callable[[str, int], Awaitable[None]]


class Dispatch(Protocol):
    name: str

    async def tasks_ready(self, tx: Tx, tasks: Sequence[Task]) -> None:
        """Called in the transaction that made the tasks claimable (queued or requeued);
        workers hear of them only if it commits."""

    def arm(self) -> None:
        """Forget earlier wake-ups; a long-polling claim calls it right before it looks."""

    async def wait_for_ready(self, timeout: float) -> None:
        """Returns when tasks may have become claimable since `arm()`, or after `timeout`."""

    def on_notification(self, payload: str) -> None:
        """Postgres NOTIFY on the tasks channel: another replica made tasks ready."""

    async def start(self, on_dead_letter: DeadLetterHandler) -> None: ...

    async def stop(self) -> None: ...


KINDS = ("db", "pubsub")
