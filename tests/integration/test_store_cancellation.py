"""A task cancelled inside a transaction (a gRPC deadline, a client gone) leaves nothing
locked: the next transaction writes the same row at once, on both databases.

On SQLite this failed before the pool's invalidate hook rolled back the discarded
connection: the server's one connection then met "database is locked" for minutes.
"""

from __future__ import annotations

import asyncio
import logging
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


async def test_a_transaction_cancelled_anywhere_leaves_nothing_locked(store: Store, caplog):
    """Cancelled at every point of a transaction in turn (between statements, inside one,
    while it commits): each time the next transaction writes the same row at once, and the
    pool logs no error (a cancel during its rollback is a one-line warning)."""
    await add_organization(store, "org_cancel")
    caplog.set_level(logging.WARNING, logger="sqlalchemy")

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
    pool_records = [r for r in caplog.records if r.name.startswith("sqlalchemy.pool")]
    assert not [r for r in pool_records if r.levelno >= logging.ERROR or r.exc_info]


async def test_a_cancel_during_the_pools_rollback_is_a_warning(store: Store, caplog):
    """The pool's own report of a cancel that landed in its reset, as SQLAlchemy logs it
    (the loop above reaches that instant only now and then, so it is logged here directly
    on the pool's logger): one warning line, no traceback. Other pool errors stay errors."""
    pool = type(store.engine.sync_engine.pool)
    logger = logging.getLogger(f"{pool.__module__}.{pool.__name__}")
    caplog.set_level(logging.WARNING, logger="sqlalchemy")
    for error in (asyncio.CancelledError(), OSError("disk gone")):
        try:
            raise error
        except BaseException:
            logger.error("Exception during reset or similar", exc_info=True)
    cancelled, other = [r for r in caplog.records if r.name == logger.name]
    assert (cancelled.levelno, cancelled.exc_info) == (logging.WARNING, None)
    assert "cancelled" in cancelled.getMessage()
    assert other.levelno == logging.ERROR and other.exc_info is not None
