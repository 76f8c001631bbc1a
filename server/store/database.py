"""The unit of work every aggregate's statements run in, and the database it runs on.

`Database` owns the engine (engine.py) and its sessions; `TxBase` is what the statement
classes of each aggregate (jobs, events, task_queue, ...) share: the session of one
transaction, callbacks that run once it committed, and Postgres NOTIFY. Direct reads
(direct_reads.py) are the way around all of that for the hottest single-statement reads
(Get, opening a Watch).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from sqlalchemy import CursorResult, Result
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from .direct_reads import DirectQuery, DirectReads
from .engine import make_engine
from .outage import outage_is_unavailable


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


class TxBase:
    """One transaction: its session, the NOTIFYs it sends just before it commits and the
    callbacks that run once it has; the aggregates' Statements hang off it."""

    def __init__(self, session: AsyncSession, is_postgres: bool) -> None:
        self.session = session
        self.is_postgres = is_postgres
        self.committed_callbacks: list[Callable[[], None]] = []
        # (channel, key) -> payload: NOTIFYs sent once, just before the commit.
        self.pending_notifications: dict[tuple[str, str], str] = {}
        self._driver: Any = None

    def after_commit(self, callback: Callable[[], None]) -> None:
        self.committed_callbacks.append(callback)

    async def driver(self) -> Any:
        """psycopg's own connection under this transaction (PostgreSQL only), for the few
        hot statements where SQLAlchemy's per-statement work costs more than the query."""
        if self._driver is None:
            connection = await (await self.session.connection()).get_raw_connection()
            self._driver = connection.driver_connection
        return self._driver

    def notify_at_commit(self, channel: str, key: str, payload: str) -> None:
        """One NOTIFY per (channel, key) for the whole transaction, carrying the last
        payload given: ten events of one job make one notification, not ten."""
        if self.is_postgres:
            self.pending_notifications[(channel, key)] = payload

    def take_pending_notifications(self) -> list[tuple[str, str]]:
        """(channel, payload) of each NOTIFY pending, which then no longer is."""
        pending, self.pending_notifications = self.pending_notifications, {}
        return [(channel, payload) for (channel, _), payload in pending.items()]

    async def send_pending_notifications(self) -> None:
        if notifications := self.take_pending_notifications():
            await self._send_notifications(notifications)

    async def _send_notifications(self, notifications: list[tuple[str, str]]) -> None:
        # Straight to the driver, in one statement: through the ORM each NOTIFY cost about
        # three times the CPU of its round trip.
        driver = await self.driver()
        if len(notifications) == 1:
            await driver.execute(NOTIFY_SQL, notifications[0])
            return
        await driver.execute(
            "SELECT pg_notify(channel, payload)"
            " FROM unnest(%s::text[], %s::text[]) AS notification(channel, payload)",
            ([channel for channel, _ in notifications], [payload for _, payload in notifications]),
        )


NOTIFY_SQL = "SELECT pg_notify(%s, %s)"


class Statements:
    """One aggregate's statements inside a unit of work (`tx.jobs`, `tx.tasks`, …): they
    share its session and connection, and reach its NOTIFYs and after-commit callbacks
    only through the transaction itself, so no aggregate can commit or notify alone."""

    def __init__(self, tx: TxBase) -> None:
        self._tx = tx
        self.session = tx.session
        self.is_postgres = tx.is_postgres

    async def driver(self) -> Any:
        return await self._tx.driver()


# Every UPDATE of a row a transaction may hold is applied to the session's copy too
# (SQLAlchemy evaluates its WHERE against the objects the session holds), so a record read
# under its lock stays current; this fails loudly, rather than leave it stale, if an UPDATE
# cannot be mirrored.
KEEP_HELD_ROWS_CURRENT = {"synchronize_session": "evaluate"}

AnyTx = TypeVar("AnyTx", bound=TxBase)


class Database:
    """Owns the engine; every read and write goes through a unit of work."""

    def __init__(self, url: str) -> None:
        self.url = async_url(url)
        self.is_postgres = self.url.startswith("postgresql")
        self.engine = make_engine(self.url, self.is_postgres)
        self.direct_reads = DirectReads(self.engine, self.is_postgres)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        # Reads that are one statement each need no BEGIN/COMMIT around them (two round
        # trips of a Get's four on PostgreSQL). Same pool, same connections.
        # (PostgreSQL only: on SQLite switching the isolation level costs more than it saves.)
        self._read_sessions = async_sessionmaker(
            self.engine.execution_options(isolation_level="AUTOCOMMIT"), expire_on_commit=False
        )

    async def close(self) -> None:
        await self.direct_reads.close()
        await self.engine.dispose()

    async def direct(self, query: DirectQuery, **values: Any) -> list[list[Any]]:
        """The rows of one SELECT, decoded, read outside any transaction (the statement
        sees the latest commit, consistently): see DirectQuery. No writes."""
        async with outage_is_unavailable():
            return await self.direct_reads.rows(query, values)

    @asynccontextmanager
    async def unit_of_work(
        self, statements: Callable[[AsyncSession, bool], AnyTx]
    ) -> AsyncIterator[AnyTx]:
        """A transaction; its after-commit callbacks run once it committed, never on rollback."""
        async with outage_is_unavailable(), self._sessions() as session, session.begin():
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
        async with outage_is_unavailable(), self._read_sessions() as session:
            yield statements(session, self.is_postgres)
