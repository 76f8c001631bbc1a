"""The engine and the unit of work every aggregate's statements run in.

`Database` owns the engine and its sessions; `TxBase` is what the statement classes of
each aggregate (jobs, events, task_queue, ...) share: the session of one transaction,
callbacks that run once it committed, and Postgres NOTIFY. `DirectQuery` is the way
around all of that for the hottest single-statement reads (Get, opening a Watch).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

import psycopg
from psycopg.pq import TransactionStatus
from sqlalchemy import CursorResult, Result, Select, event
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

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

# Driver connections PostgreSQL's direct reads keep open, beside the engine's pool.
DIRECT_READ_CONNECTIONS = 4
DIRECT_READ_APPLICATION = "kiln-direct-reads"


class DirectQuery:
    """A SELECT run straight on a driver connection: no Session, no SQLAlchemy Connection,
    no per-call compiling (an ORM read of one job costs ~1 ms of CPU; this, ~0.1 ms).

    Written with SQLAlchemy Core and compiled once per dialect; each column's value is
    decoded by the column's own type, as the ORM decodes it (SQLite's JSON text, its
    datetime strings, its 0/1 booleans), so rows hold what the ORM would have loaded.
    Parameters are bindparam() names, given as keywords.
    """

    def __init__(self, statement: Select[Any]) -> None:
        self.statement = statement
        self._by_dialect: dict[str, _CompiledQuery] = {}

    def compiled(self, dialect: Dialect) -> _CompiledQuery:
        compiled = self._by_dialect.get(dialect.name)
        if compiled is None:
            compiled = self._by_dialect[dialect.name] = _CompiledQuery(self.statement, dialect)
        return compiled


class _CompiledQuery:
    def __init__(self, statement: Select[Any], dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        self.sql = compiled.string
        self._positions = compiled.positiontup  # qmark (SQLite); None for named (psycopg)
        self._dialect = dialect
        self._types = [column.type.dialect_impl(dialect) for column in statement.selected_columns]
        # (index, decoder) of the columns that need one; known at the first result, whose
        # column type codes some decoders depend on (PostgreSQL's float or numeric).
        self._decoders: list[tuple[int, Callable[[Any], Any]]] | None = None

    def parameters(self, values: dict[str, Any]) -> Any:
        if self._positions is None:
            return values
        return tuple(values[name] for name in self._positions)

    @property
    def needs_type_codes(self) -> bool:
        return self._decoders is None

    def decode(
        self, rows: Sequence[Sequence[Any]], type_codes: Sequence[Any] | None = None
    ) -> list[list[Any]]:
        """Rows as the ORM would load them; `type_codes`: the driver's column types, where
        it has them (psycopg's type OIDs; sqlite3 has none)."""
        decoders = self._decoders
        if decoders is None:
            codes = type_codes or [None] * len(self._types)
            decoders = self._decoders = []
            for index, (column_type, code) in enumerate(zip(self._types, codes, strict=True)):
                processor = column_type.result_processor(self._dialect, code)
                if processor is not None:
                    decoders.append((index, processor))
        decoded = []
        for row in rows:
            values = list(row)
            for index, decoder in decoders:
                values[index] = decoder(values[index])
            decoded.append(values)
        return decoded


class _PostgresDirect:
    """Autocommit psycopg connections of the direct reads' own: a read is one round trip
    (no BEGIN/COMMIT) of a statement prepared once per connection, in binary format."""

    def __init__(self, engine: AsyncEngine, size: int) -> None:
        self._connect_args = engine.dialect.create_connect_args(engine.url)
        self._idle: list[psycopg.AsyncConnection[Any]] = []
        self._slots = asyncio.Semaphore(size)

    async def rows(self, query: _CompiledQuery, values: dict[str, Any]) -> list[list[Any]]:
        parameters = query.parameters(values)
        async with self._slots:
            while True:
                reused = bool(self._idle)
                connection = self._idle.pop() if reused else await self._connect()
                try:
                    cursor = await connection.execute(
                        query.sql, parameters, prepare=True, binary=True
                    )
                    rows = await cursor.fetchall()
                except psycopg.OperationalError:
                    # An idle connection the server dropped (a restart, a timeout): the read
                    # changes nothing, so it is made again on another connection.
                    if reused and connection.broken:
                        continue
                    raise
                finally:
                    await self._put_back(connection)
                codes = None
                if query.needs_type_codes:  # (cursor.description costs ~30 us a call)
                    codes = [column.type_code for column in cursor.description or ()]
                return query.decode(rows, codes)

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        args, kwargs = self._connect_args
        # Named, so an operator can tell them in pg_stat_activity (unless the URL names its own).
        kwargs = {"application_name": DIRECT_READ_APPLICATION, **kwargs}
        return await psycopg.AsyncConnection.connect(*args, **kwargs, autocommit=True)

    async def _put_back(self, connection: psycopg.AsyncConnection[Any]) -> None:
        """Kept for the next read only if it is idle (a cancelled read may leave it not)."""
        if not connection.broken and connection.info.transaction_status == TransactionStatus.IDLE:
            self._idle.append(connection)
        else:
            await connection.close()

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            await connection.close()


class _SqliteDirect:
    """One stdlib sqlite3 connection, used on the event loop itself: a short read by key
    takes microseconds, less than one of aiosqlite's thread hops (it makes 3-4 per read).

    In WAL mode (set by every engine connection) a reader never waits for the writer: it
    reads the last commit, whatever transaction is open. With no busy timeout, anything that
    would make it wait (an exclusive lock, a WAL being recovered or reset, a database not
    yet in WAL mode) raises at once instead of blocking the loop, and the caller reads
    through the engine instead, which waits as every other statement does.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._connection: sqlite3.Connection | None = None

    def rows(self, query: _CompiledQuery, values: dict[str, Any]) -> list[list[Any]]:
        if self._connection is None:
            # Autocommit: each SELECT is its own read transaction, ended once its rows are
            # fetched, so no read holds an old snapshot (or holds up a checkpoint).
            connection = sqlite3.connect(self.path, timeout=0, isolation_level=None)
            connection.execute("PRAGMA query_only = ON")
            self._connection = connection
        cursor = self._connection.execute(query.sql, query.parameters(values))
        return query.decode(cursor.fetchall())

    async def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def _must_wait(error: sqlite3.OperationalError) -> bool:
    return error.sqlite_errorcode in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


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
            # "close" also fires for a connection invalidated after a cancel (invalidating
            # closes it); "close_detached" for one the pool let go of without a record.
            for closing in ("close", "close_detached"):
                event.listen(self.engine.sync_engine.pool, closing, _roll_back_abandoned)
        pool = type(self.engine.sync_engine.pool)
        # One filter object for every engine: addFilter skips one already there.
        logging.getLogger(f"{pool.__module__}.{pool.__name__}").addFilter(_CANCELLED_RESET)
        self._postgres_direct: _PostgresDirect | None = None
        self._sqlite_direct: _SqliteDirect | None = None
        if self.is_postgres:
            self._postgres_direct = _PostgresDirect(self.engine, DIRECT_READ_CONNECTIONS)
        elif (path := self.engine.url.database) and path != ":memory:":
            self._sqlite_direct = _SqliteDirect(path)
        # Counted for tests: SQLite direct reads that found the database locked.
        self.direct_reads_deferred = 0
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        # Reads that are one statement each need no BEGIN/COMMIT around them (two round
        # trips of a Get's four on PostgreSQL). Same pool, same connections.
        # (PostgreSQL only: on SQLite switching the isolation level costs more than it saves.)
        self._read_sessions = async_sessionmaker(
            self.engine.execution_options(isolation_level="AUTOCOMMIT"), expire_on_commit=False
        )

    async def close(self) -> None:
        if self._postgres_direct is not None:
            await self._postgres_direct.close()
        if self._sqlite_direct is not None:
            await self._sqlite_direct.close()
        await self.engine.dispose()

    async def direct(self, query: DirectQuery, **values: Any) -> list[list[Any]]:
        """The rows of one SELECT, decoded, read outside any transaction (the statement
        sees the latest commit, consistently): see DirectQuery. No writes."""
        compiled = query.compiled(self.engine.dialect)
        async with outage_is_unavailable():
            return await self._direct_rows(compiled, values)

    async def _direct_rows(
        self, compiled: _CompiledQuery, values: dict[str, Any]
    ) -> list[list[Any]]:
        if self._postgres_direct is not None:
            return await self._postgres_direct.rows(compiled, values)
        if self._sqlite_direct is not None:
            try:
                return self._sqlite_direct.rows(compiled, values)
            except sqlite3.OperationalError as error:
                if not _must_wait(error):
                    raise
                self.direct_reads_deferred += 1
        async with self.engine.connect() as connection:
            result = await connection.exec_driver_sql(compiled.sql, compiled.parameters(values))
            return compiled.decode(result.all())

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
