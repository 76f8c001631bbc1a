"""Postgres LISTEN: carries "job X has new events" and "a task is queued" across processes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import psycopg

log = logging.getLogger(__name__)

EVENTS_CHANNEL = "kiln_events"
TASKS_CHANNEL = "kiln_tasks"


class PostgresListener:
    def __init__(self, dsn: str, handlers: dict[str, Callable[[str], None]]) -> None:
        self.dsn = dsn
        self.handlers = handlers
        self._task: asyncio.Task | None = None
        self.ready = asyncio.Event()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="pg-listener")
        await asyncio.wait_for(self.ready.wait(), timeout=30)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        reconnected = False
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.dsn, autocommit=True) as conn:
                    for channel in self.handlers:
                        await conn.execute(f"LISTEN {channel}")
                    self.ready.set()
                    if reconnected:
                        # Other processes committed while this one was not listening (the
                        # database restarting, then this reconnect): their notifications
                        # are gone, so every watched job's log is read again now.
                        self._everything_may_have_changed()
                    async for notification in conn.notifies():
                        handler = self.handlers.get(notification.channel)
                        if handler:
                            handler(notification.payload)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                # A dropped connection loses notifications, not events: every watched
                # job's log is read again now and once more after the reconnect (the hub
                # also retries, at heartbeats, a read the database refused).
                if isinstance(error, psycopg.OperationalError):
                    # The database restarting or away: expected, and retried below.
                    log.warning("postgres listener lost its connection (%s); reconnecting", error)
                else:
                    log.exception("postgres listener failed; reconnecting")
                self._everything_may_have_changed()
                reconnected = True
                await asyncio.sleep(1)

    def _everything_may_have_changed(self) -> None:
        handler = self.handlers.get(EVENTS_CHANNEL)
        if handler is not None:
            handler("*")
