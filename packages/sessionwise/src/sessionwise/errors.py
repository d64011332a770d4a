"""Classify database failures by their cause: which ones a retry can fix, and how to answer.

Only a failure of database work, raised by SQLAlchemy or the driver, is classified as anything
but `Failure.OTHER`; what an application raises itself (an ``OSError`` from ``open()``, a
``TimeoutError`` from ``asyncio.wait_for``) is the application's, however it looks. Within
database failures the cause decides, never the exception's type or message:

* PostgreSQL by SQLSTATE (https://www.postgresql.org/docs/current/errcodes-appendix.html);
* SQLite by result code (https://www.sqlite.org/rescode.html), whose primary code is the low
  byte of ``sqlite3.Error.sqlite_errorcode``;
* a connection SQLAlchemy found closed (``connection_invalidated``) is unavailable, whatever
  the driver said.

The full table, with the HTTP answer of each class, is in ``docs/errors.md``. Kept apart from
any web framework so that background jobs and the FastAPI adapter decide alike.
"""

from __future__ import annotations

import enum

from sqlalchemy import exc

from sessionwise.exceptions import SessionwiseError, WriteQueueTimeoutError

__all__ = [
    "Failure",
    "cause",
    "classify",
    "driver_error",
    "is_retryable",
    "sqlite_result_code",
    "sqlstate",
]

# PostgreSQL error codes (https://www.postgresql.org/docs/current/errcodes-appendix.html).
SERIALIZATION_FAILURE = "40001"
DEADLOCK_DETECTED = "40P01"
QUERY_CANCELED = "57014"  # statement_timeout, or a cancel request
LOCK_NOT_AVAILABLE = "55P03"  # lock_timeout, or FOR UPDATE NOWAIT
# A write on a read-only server or in a READ ONLY transaction. Not classified by itself: on a
# write session it means the server is a standby (sessionwise.failover marks the connection
# invalidated, so it is unavailable); in a read-only session it is a bug (OTHER).
READ_ONLY_SQL_TRANSACTION = "25006"
# A client-side SQLSTATE: sessionwise.postgres reports an asyncpg connect that failed at the
# socket (refused, reset, timed out) as an OperationalError with this code.
UNABLE_TO_CONNECT = "08001"


class Failure(enum.Enum):
    """What went wrong, from the caller's point of view."""

    POOL_EXHAUSTED = "pool_exhausted"  # no connection within pool_timeout
    UNAVAILABLE = "unavailable"  # the database cannot be reached, went away, or lacks resources
    TIMEOUT = "timeout"  # a statement ran past statement_timeout
    CONFLICT = "conflict"  # serialization failure or deadlock: re-run the transaction
    LOCKED = "locked"  # a lock wait ran out (SQLite busy, PostgreSQL lock_timeout)
    INTEGRITY = "integrity"  # a constraint refused the change
    OTHER = "other"  # not a failure the caller can name: a bug to fix, answered 500


_BY_SQLSTATE_CLASS: dict[str, Failure] = {
    "08": Failure.UNAVAILABLE,  # connection exception
    "23": Failure.INTEGRITY,  # integrity constraint violation
    "53": Failure.UNAVAILABLE,  # insufficient resources: disk full, out of memory, too many
}
_BY_SQLSTATE: dict[str, Failure] = {
    SERIALIZATION_FAILURE: Failure.CONFLICT,
    DEADLOCK_DETECTED: Failure.CONFLICT,
    QUERY_CANCELED: Failure.TIMEOUT,
    LOCK_NOT_AVAILABLE: Failure.LOCKED,
    "57P01": Failure.UNAVAILABLE,  # admin_shutdown (fast or smart shutdown, pg_terminate)
    "57P02": Failure.UNAVAILABLE,  # crash_shutdown
    "57P03": Failure.UNAVAILABLE,  # cannot_connect_now: starting up or shutting down
    "57P05": Failure.UNAVAILABLE,  # idle_session_timeout closed the pooled connection
    "58030": Failure.UNAVAILABLE,  # io_error: the server's storage failed
}

# SQLite primary result codes (https://www.sqlite.org/rescode.html). Every code not listed,
# notably SQLITE_ERROR (syntax errors, "no such table", "no such column"), MISUSE, READONLY,
# RANGE, INTERRUPT, CORRUPT, NOTADB and MISMATCH, is a bug or a broken deployment: OTHER.
_BY_SQLITE_CODE: dict[int, Failure] = {
    5: Failure.LOCKED,  # SQLITE_BUSY: busy_timeout ran out (also BUSY_SNAPSHOT, BUSY_RECOVERY)
    6: Failure.LOCKED,  # SQLITE_LOCKED: a conflict within the process's shared cache
    15: Failure.LOCKED,  # SQLITE_PROTOCOL: WAL lock retries ran out under heavy contention
    19: Failure.INTEGRITY,  # SQLITE_CONSTRAINT: UNIQUE, FOREIGN KEY, NOT NULL, CHECK
    # The storage under the database failed, as PostgreSQL's class 53 and 58030: nothing the
    # request did wrong, and the same request can succeed once the operator acted (or the
    # condition passed). CANTOPEN is SQLite's "could not connect": a missing directory, a
    # permission, too many open files.
    7: Failure.UNAVAILABLE,  # SQLITE_NOMEM
    10: Failure.UNAVAILABLE,  # SQLITE_IOERR
    13: Failure.UNAVAILABLE,  # SQLITE_FULL: the disk (or max_page_count) is full
    14: Failure.UNAVAILABLE,  # SQLITE_CANTOPEN
}


def _driver_errors(error: BaseException) -> list[BaseException]:
    # SQLAlchemy keeps the driver's exception as `.orig`; the asyncpg adapter wraps asyncpg's
    # own exception once more (its `.orig`, sqlalchemy.exc.EmulatedDBAPIException).
    found: list[BaseException] = []
    candidate = getattr(error, "orig", None)
    while isinstance(candidate, BaseException) and len(found) < 3:
        found.append(candidate)
        candidate = getattr(candidate, "orig", None) or candidate.__cause__
    return found


def driver_error(error: BaseException) -> BaseException | None:
    """The driver's own exception behind a SQLAlchemy error (asyncpg's, sqlite3's), if any."""
    found = _driver_errors(error)
    return found[-1] if found else None


def sqlstate(error: BaseException) -> str | None:
    """The SQLSTATE of a driver error wrapped by SQLAlchemy, where the driver reports one."""
    for candidate in _driver_errors(error):
        code = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if isinstance(code, str):
            return code
    return None


def sqlite_result_code(error: BaseException) -> tuple[int, str] | None:
    """The extended SQLite result code and its name (``SQLITE_BUSY``), where SQLite set one.

    ``None`` for errors the ``sqlite3`` module raises without asking SQLite (a closed
    connection, a wrong number of parameters): those are programming errors.
    """
    for candidate in _driver_errors(error):
        code = getattr(candidate, "sqlite_errorcode", None)
        if isinstance(code, int):
            name = getattr(candidate, "sqlite_errorname", None)
            return code, name if isinstance(name, str) else f"SQLite result code {code}"
    return None


def cause(error: BaseException) -> str | None:
    """The code behind a database failure, for logs: ``"SQLSTATE 40001"``, ``"SQLITE_BUSY"``."""
    code = sqlstate(error)
    if code is not None:
        return f"SQLSTATE {code}"
    result = sqlite_result_code(error)
    return result[1] if result is not None else None


def classify(error: BaseException) -> Failure:
    """Map an exception to a `Failure`: `Failure.OTHER` unless it is a database failure."""
    if isinstance(error, WriteQueueTimeoutError):
        return Failure.LOCKED  # sessionwise's own wait for SQLite's write lock ran out
    if isinstance(error, SessionwiseError) or not isinstance(error, exc.SQLAlchemyError):
        return Failure.OTHER
    if isinstance(error, exc.TimeoutError):
        return Failure.POOL_EXHAUSTED  # the pool's (or sessionwise.pool_turns') wait ran out
    if not isinstance(error, exc.DBAPIError):
        return Failure.OTHER  # SQLAlchemy refused the call itself: a programming error
    if error.connection_invalidated:
        return Failure.UNAVAILABLE  # the dialect saw the connection closed under it
    code = sqlstate(error)
    if code is not None:
        return _BY_SQLSTATE.get(code) or _BY_SQLSTATE_CLASS.get(code[:2], Failure.OTHER)
    result = sqlite_result_code(error)
    if result is not None:
        return _BY_SQLITE_CODE.get(result[0] & 0xFF, Failure.OTHER)
    if isinstance(error, exc.IntegrityError):
        # A driver that reports no code still told us the cause (PEP 249's IntegrityError).
        return Failure.INTEGRITY
    return Failure.OTHER


def is_retryable(error: BaseException) -> bool:
    """True when re-running the whole transaction in a fresh session may succeed."""
    return classify(error) in (Failure.CONFLICT, Failure.LOCKED)
