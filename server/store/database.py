"""The engine and the unit of work every aggregate's statements run in.

`Database` owns the engine and its sessions; `TxBase` is what the statement classes of
each aggregate (jobs, events, task_queue, ...) share: the session of one transaction,
callbacks that run once it committed, and Postgres NOTIFY.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from sqlalchemy import CursorResult, Result, event, func, insert, inspect, select
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)


def now() -> datetime:
    return datetime.now(UTC)


def aware(moment: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything we store is UTC."""
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment


def async_url(url: str) -> str:
    """Map a user-facing database URL to the async driver SQLAlchemy needs."""
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url.removeprefix("sqlite:///")
    for prefix in ("postgresql://", "postgres://", "postgresql+psycopg://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    return url


def sync_url(url: str) -> str:
    """The same database for synchronous tools (Alembic)."""
    if url.startswith("sqlite+aiosqlite:///"):
        return "sqlite:///" + url.removeprefix("sqlite+aiosqlite:///")
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    return url


def rows_changed(result: Result[Any]) -> int:
    """Rows an UPDATE or DELETE changed (what every guarded status change is judged by)."""
    return cast(CursorResult[Any], result).rowcount


def insert_rows(objects: Sequence[Any]) -> tuple[Any, list[dict[str, Any]]]:
    """A Core INSERT and its parameter rows for new ORM objects of one class.

    Bulk inserts skip the ORM's per-object bookkeeping (a large part of a Create's CPU);
    the objects stay as built, detached, for the caller to answer from. An attribute never
    set takes its column's scalar default, as the ORM would give it.
    """
    mapper = inspect(type(objects[0]))
    table = mapper.local_table
    rows = []
    for obj in objects:
        state = obj.__dict__
        row = {}
        for prop in mapper.column_attrs:
            column = prop.columns[0]
            if prop.key in state:
                row[column.key] = state[prop.key]
            elif column.default is not None and column.default.is_scalar:
                row[column.key] = column.default.arg
            else:
                row[column.key] = None
        rows.append(row)
    return insert(table), rows


class TxBase:
    """One transaction's session; the aggregates' statement classes build on it."""

    def __init__(self, session: AsyncSession, is_postgres: bool) -> None:
        self.session = session
        self.is_postgres = is_postgres
        self.committed_callbacks: list[Callable[[], None]] = []
        # (channel, key) -> payload: NOTIFYs sent once, just before the commit.
        self.pending_notifications: dict[tuple[str, str], str] = {}

    def after_commit(self, callback: Callable[[], None]) -> None:
        self.committed_callbacks.append(callback)

    async def notify(self, channel: str, payload: str) -> None:
        """Postgres NOTIFY, delivered to listeners when this transaction commits."""
        if self.is_postgres:
            await self.session.execute(select(func.pg_notify(channel, payload)))

    def notify_at_commit(self, channel: str, key: str, payload: str) -> None:
        """One NOTIFY per (channel, key) for the whole transaction, carrying the last
        payload given: ten events of one job make one notification, not ten."""
        if self.is_postgres:
            self.pending_notifications[(channel, key)] = payload

    async def send_pending_notifications(self) -> None:
        pending, self.pending_notifications = self.pending_notifications, {}
        for (channel, _), payload in pending.items():
            await self.notify(channel, payload)


AnyTx = TypeVar("AnyTx", bound=TxBase)


class Database:
    """Owns the engine; every read and write goes through a unit of work."""

    def __init__(self, url: str) -> None:
        self.url = async_url(url)
        self.is_postgres = self.url.startswith("postgresql")
        if self.is_postgres:
            self.engine: AsyncEngine = create_async_engine(self.url, pool_size=10, max_overflow=10)
        else:
            # One connection: SQLite has one writer anyway, and queueing here is
            # kinder than "database is locked" errors.
            self.engine = create_async_engine(
                self.url, pool_size=1, max_overflow=0, connect_args={"timeout": 30}
            )
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        # Reads that are one statement each need no BEGIN/COMMIT around them (two round
        # trips of a Get's four on PostgreSQL). Same pool, same connections.
        # (PostgreSQL only: on SQLite switching the isolation level costs more than it saves.)
        self._read_sessions = async_sessionmaker(
            self.engine.execution_options(isolation_level="AUTOCOMMIT"), expire_on_commit=False
        )

    async def close(self) -> None:
        await self.engine.dispose()

    @asynccontextmanager
    async def unit_of_work(
        self, statements: Callable[[AsyncSession, bool], AnyTx]
    ) -> AsyncIterator[AnyTx]:
        """A transaction; its after-commit callbacks run once it committed, never on rollback."""
        async with self._sessions() as session, session.begin():
            tx = statements(session, self.is_postgres)
            yield tx
            # Inside the transaction: PostgreSQL delivers them only if it commits.
            await tx.send_pending_notifications()
        for callback in tx.committed_callbacks:
            callback()

    @asynccontextmanager
    async def read_only(
        self, statements: Callable[[AsyncSession, bool], AnyTx]
    ) -> AsyncIterator[AnyTx]:
        """Statements outside a transaction, each seeing the latest commit: for reads whose
        every statement stands alone (the read of one job is one statement). No writes."""
        if not self.is_postgres:
            async with self.unit_of_work(statements) as tx:
                yield tx
            return
        async with self._read_sessions() as session:
            yield statements(session, self.is_postgres)


def _sqlite_pragmas(connection, _record) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
