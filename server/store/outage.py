"""A database that cannot be reached is a retryable condition, not a server fault.

PostgreSQL restarting, failing over or refusing connections for a moment reaches the code
as driver errors (a refused connection, "terminating connection due to administrator
command", a connection the pool finds dead). Left alone they would reach clients as
INTERNAL with a traceback in the log for every call. The store turns them into the
domain's `Unavailable` (UNAVAILABLE on both protocols: clients and workers retry it), logs
one line per outage rather than one per call, and lets every other database error through
unchanged: a bad statement is still a bug.
"""

from __future__ import annotations

import logging
import sqlite3
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
from sqlalchemy import exc as sa_exc

from ..domain.errors import Unavailable

log = logging.getLogger(__name__)

UNREACHABLE_MESSAGE = "the database is unreachable; retry shortly"
# One warning per this many seconds while the outage lasts.
LOG_EVERY_SECONDS = 5.0


class _Throttle:
    """Lets one warning through per LOG_EVERY_SECONDS."""

    def __init__(self) -> None:
        self.last = float("-inf")

    def due(self) -> bool:
        moment = time.monotonic()
        if moment - self.last < LOG_EVERY_SECONDS:
            return False
        self.last = moment
        return True


_warnings = _Throttle()


def is_outage(error: BaseException) -> bool:
    """Whether `error` says the database could not be reached or dropped the connection."""
    if isinstance(error, sa_exc.DBAPIError):
        if error.connection_invalidated:
            return True
        error = error.orig  # type: ignore[assignment]
    elif isinstance(error, sa_exc.TimeoutError):
        # Every pooled connection busy past the pool's timeout: the database is not
        # answering fast enough to hand one back.
        return True
    if isinstance(error, psycopg.OperationalError):
        # Connection failures, admin/crash shutdowns, "starting up": all class 08/57
        # conditions psycopg files under OperationalError. Statement-level errors
        # (syntax, constraint) are ProgrammingError/IntegrityError and stay bugs.
        return True
    if isinstance(error, sqlite3.OperationalError):
        return error.sqlite_errorcode in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return isinstance(error, ConnectionError)


def unavailable(error: BaseException) -> Unavailable:
    if _warnings.due():
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        log.warning("database unreachable (%s: %s)", type(error).__name__, first_line)
    return Unavailable(UNREACHABLE_MESSAGE)


@asynccontextmanager
async def outage_is_unavailable() -> AsyncIterator[None]:
    """Run the body; a lost database inside it leaves as `Unavailable`."""
    try:
        yield
    except Exception as error:
        if is_outage(error):
            raise unavailable(error) from error
        raise


def log_round_failure(logger: logging.Logger, message: str, *args: object) -> None:
    """For a background round's `except Exception`: while the database is away, one
    warning line (the round retries by itself); anything else with its traceback."""
    error = sys.exc_info()[1]
    if isinstance(error, Unavailable):
        logger.warning(f"{message}: %s", *args, error.message)
    else:
        logger.exception(message, *args)
