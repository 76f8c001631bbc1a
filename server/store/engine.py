"""The engine of each kind of database: its pool, SQLite's pragmas, and cancelled connections."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


def make_engine(url: str, is_postgres: bool) -> AsyncEngine:
    """The engine for an async URL (database.async_url)."""
    if is_postgres:
        engine = create_async_engine(url, pool_size=10, max_overflow=10)
    else:
        # One connection: SQLite has one writer anyway, and queueing here is
        # kinder than "database is locked" errors.
        engine = create_async_engine(url, pool_size=1, max_overflow=0, connect_args={"timeout": 30})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        # "close" also fires for a connection invalidated after a cancel (invalidating
        # closes it); "close_detached" for one the pool let go of without a record.
        for closing in ("close", "close_detached"):
            event.listen(engine.sync_engine.pool, closing, _roll_back_abandoned)
    pool = type(engine.sync_engine.pool)
    # One filter object for every engine: addFilter skips one already there.
    logging.getLogger(f"{pool.__module__}.{pool.__name__}").addFilter(_CANCELLED_RESET)
    return engine


class _CancelledResetIsNoError(logging.Filter):
    """A cancelled request (a client gone, a worker ending its heartbeat stream) may be
    cancelled while SQLAlchemy rolls its connection back on the way into the pool. The pool
    then logs "Exception during reset" at ERROR with the CancelledError's traceback, and
    discards the connection, which is what should happen: PostgreSQL ends the transaction
    with the connection, and SQLite's is rolled back by _roll_back_abandoned. Said in one
    warning line, without a traceback that reads as a server fault."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, asyncio.CancelledError):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.msg, record.args = (
                "a cancelled request's connection was discarded during its rollback",
                None,
            )
            record.exc_info = record.exc_text = None
        return True


_CANCELLED_RESET = _CancelledResetIsNoError()


def _roll_back_abandoned(connection, *_event_args) -> None:
    """A SQLite connection the pool closes ends its transaction first.

    SQLAlchemy discards a connection whose statement was interrupted (a task cancelled
    inside a transaction: a gRPC deadline, a client gone). Closing it leaves SQLite a
    "zombie" until every statement object of it is freed, and a zombie keeps its write
    lock: the server's next connection then found the database locked for minutes (until
    the garbage collector freed the old cursors). A rollback releases the lock at once.

    It is queued on the connection's own aiosqlite thread, behind the statement the cancel
    interrupted: that statement may not have begun its transaction yet when the pool gives
    the connection up (a rollback from here could come first and find nothing to undo), and
    it runs before the close the pool queues next. aiosqlite has no public way to queue a
    call: if its private `_tx` queue or `_connection` go away this does nothing, and
    tests/integration/test_store_cancellation.py fails.
    """
    driver = getattr(connection, "driver_connection", None)
    queue = getattr(driver, "_tx", None)
    if queue is None:
        return

    def roll_back() -> None:
        raw = getattr(driver, "_connection", None)
        if isinstance(raw, sqlite3.Connection) and raw.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                raw.rollback()

    queue.put_nowait((None, roll_back))


def _sqlite_pragmas(connection, _record) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
