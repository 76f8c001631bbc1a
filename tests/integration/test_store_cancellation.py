"""A task cancelled inside a transaction (a gRPC deadline, a client gone) leaves nothing
locked: the next transaction writes the same row at once, on both databases.

On SQLite this failed before the pool's invalidate hook rolled back the discarded
connection: the server's one connection then met "database is locked" for minutes.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from sqlalchemy import text

from server.store.store import Store

LOCK_WAIT_MS = 2000


async def add_organization(store: Store, organization_id: str) -> None:
    async with store.transaction() as tx:
        await tx.session.execute(
            text(
                "INSERT INTO organizations (id, name, currency, created_at) VALUES (:id, '', 'USD', :at)"
            ),
            {"id": organization_id, "at": datetime.now(UTC)},
        )


async def short_lock_wait(store: Store, tx) -> None:
    """Fail within LOCK_WAIT_MS instead of the engine's 30 s if the row is still locked."""
    if store.is_postgres:
        await tx.session.execute(text(f"SET LOCAL lock_timeout = {LOCK_WAIT_MS}"))
    else:
        await tx.session.execute(text(f"PRAGMA busy_timeout = {LOCK_WAIT_MS}"))


async def test_a_transaction_cancelled_anywhere_leaves_nothing_locked(store: Store):
    """Cancelled at every point of a transaction in turn (between statements, inside one,
    while it commits): each time the next transaction writes the same row at once."""
    await add_organization(store, "org_cancel")

    async def cancelled_writer() -> None:
        async with store.transaction() as tx:
            await tx.session.execute(
                text("UPDATE organizations SET name = 'held' WHERE id = 'org_cancel'")
            )
            for _ in range(20):
                await tx.session.execute(text("SELECT count(*) FROM organizations"))

    for turns in range(60):
        writer = asyncio.create_task(cancelled_writer())
        for _ in range(turns):  # let the writer get this far, then cancel it
            await asyncio.sleep(0)
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)

        async with store.transaction() as tx:
            await short_lock_wait(store, tx)
            await tx.session.execute(
                text("UPDATE organizations SET name = :name WHERE id = 'org_cancel'"),
                {"name": f"next {turns}"},
            )
        async with store.transaction() as tx:
            name = await tx.session.scalar(
                text("SELECT name FROM organizations WHERE id = 'org_cancel'")
            )
        assert name == f"next {turns}"
