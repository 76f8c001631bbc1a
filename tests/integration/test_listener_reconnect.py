"""The LISTEN connection across a PostgreSQL restart (server/events/listener.py), on a
PostgreSQL of the test's own: notifications sent while it was not listening are gone, so once
it listens again it must say "everything may have changed" — or Watch streams of this replica
miss events other replicas committed in that window (found by the soak across hosts: three
watchers waited on heartbeats alone for jobs that had completed)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import psycopg
import pytest

from server.events.listener import EVENTS_CHANNEL, PostgresListener
from tests.support.private_postgres import PrivatePostgres

TIMEOUT = 30.0


@pytest.fixture
def postgres() -> Iterator[PrivatePostgres]:
    with PrivatePostgres() as server:
        yield server


async def test_after_reconnecting_the_listener_says_every_job_may_have_changed(postgres):
    calls: list[str] = []
    heard = asyncio.Event()

    def on_events(payload: str) -> None:
        calls.append(payload)
        if payload == "probe":
            heard.set()

    listener = PostgresListener(postgres.url, {EVENTS_CHANNEL: on_events})
    await listener.start()
    try:
        await asyncio.to_thread(postgres.stop)
        await asyncio.to_thread(postgres.start)  # returns once it accepts connections
        calls.append("RESTARTED")

        async def notify_until_heard() -> None:
            async with await psycopg.AsyncConnection.connect(postgres.url) as connection:
                while not heard.is_set():
                    await connection.execute(f"NOTIFY {EVENTS_CHANNEL}, 'probe'")
                    await connection.commit()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(heard.wait(), 0.2)

        await asyncio.wait_for(notify_until_heard(), TIMEOUT)
    finally:
        await listener.stop()
    after_restart = calls[calls.index("RESTARTED") : calls.index("probe")]
    # Listening again, and before any new notification: everything may have changed.
    assert "*" in after_restart, calls
