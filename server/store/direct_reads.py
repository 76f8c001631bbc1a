"""Reads of one statement straight on a driver connection, around the ORM and the pool."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus
from sqlalchemy import Select
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine

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


class DirectReads:
    """Where one database's direct reads go: PostgreSQL's own connections, SQLite's one
    connection on the loop (or the engine, when that would wait), else (an in-memory
    SQLite database) the engine."""

    def __init__(self, engine: AsyncEngine, is_postgres: bool) -> None:
        self._engine = engine
        self._postgres: _PostgresDirect | None = None
        self._sqlite: _SqliteDirect | None = None
        if is_postgres:
            self._postgres = _PostgresDirect(engine, DIRECT_READ_CONNECTIONS)
        elif (path := engine.url.database) and path != ":memory:":
            self._sqlite = _SqliteDirect(path)
        # Counted for tests: SQLite direct reads that found the database locked.
        self.deferred = 0

    async def rows(self, query: DirectQuery, values: dict[str, Any]) -> list[list[Any]]:
        compiled = query.compiled(self._engine.dialect)
        if self._postgres is not None:
            return await self._postgres.rows(compiled, values)
        if self._sqlite is not None:
            try:
                return self._sqlite.rows(compiled, values)
            except sqlite3.OperationalError as error:
                if not _must_wait(error):
                    raise
                self.deferred += 1
        async with self._engine.connect() as connection:
            result = await connection.exec_driver_sql(compiled.sql, compiled.parameters(values))
            return compiled.decode(result.all())

    async def close(self) -> None:
        if self._postgres is not None:
            await self._postgres.close()
        if self._sqlite is not None:
            await self._sqlite.close()
