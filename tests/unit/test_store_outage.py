"""Which database errors mean "unreachable, retry" (UNAVAILABLE) and which stay bugs."""

from __future__ import annotations

import sqlite3

import psycopg
import pytest
from sqlalchemy import exc as sa_exc

from server.domain.errors import Unavailable
from server.store.outage import is_outage, outage_is_unavailable


def _sqlite_error(statement: str) -> sqlite3.OperationalError:
    connection = sqlite3.connect(":memory:")
    try:
        connection.execute(statement)
    except sqlite3.OperationalError as error:
        return error
    raise AssertionError("the statement ran")


def _refused_connection() -> psycopg.OperationalError:
    """What psycopg raises when nothing listens on the port (port 1 on loopback)."""
    try:
        psycopg.connect("postgresql://postgres@127.0.0.1:1/postgres", connect_timeout=2)
    except psycopg.OperationalError as error:
        return error
    raise AssertionError("something listens on port 1")


def test_a_refused_connection_is_an_outage_bare_and_wrapped():
    refused = _refused_connection()
    assert is_outage(refused)
    assert is_outage(sa_exc.OperationalError("SELECT 1", {}, refused))


def test_statement_errors_are_not_outages():
    assert not is_outage(_sqlite_error("SELECT * FROM no_such_table"))
    assert not is_outage(sa_exc.IntegrityError("INSERT", {}, Exception("duplicate key")))
    assert not is_outage(ValueError("bad"))


def test_a_dropped_connection_flagged_by_sqlalchemy_is_an_outage():
    dropped = sa_exc.DBAPIError("SELECT 1", {}, Exception("gone"), connection_invalidated=True)
    assert is_outage(dropped)


async def test_the_store_boundary_turns_outages_into_unavailable_and_lets_bugs_through():
    with pytest.raises(Unavailable, match="database is unreachable"):
        async with outage_is_unavailable():
            raise _refused_connection()
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        async with outage_is_unavailable():
            raise _sqlite_error("SELECT * FROM no_such_table")
