"""Classify database failures: which ones a retry can fix, and how a caller should answer.

Kept apart from any web framework so that background jobs and the FastAPI adapter decide
alike.
"""

from __future__ import annotations

import enum

from sqlalchemy import exc

from sessionwise.exceptions import WriteQueueTimeoutError

__all__ = ["Failure", "classify", "sqlstate"]

# PostgreSQL error codes (https://www.postgresql.org/docs/current/errcodes-appendix.html).
SERIALIZATION_FAILURE = "40001"
DEADLOCK_DETECTED = "40P01"
QUERY_CANCELED = "57014"  # statement_timeout, or a cancel request
ADMIN_SHUTDOWN = "57P01"
CANNOT_CONNECT_NOW = "57P03"  # the server is starting up or shutting down
_RETRY_TRANSACTION = {SERIALIZATION_FAILURE, DEADLOCK_DETECTED}
_UNAVAILABLE = {ADMIN_SHUTDOWN, CANNOT_CONNECT_NOW, "57P02", "08000", "08003", "08006", "08001"}


class Failure(enum.Enum):
    """What went wrong, from the caller's point of view."""

    POOL_EXHAUSTED = "pool_exhausted"  # no connection within pool_timeout
    UNAVAILABLE = "unavailable"  # the database cannot be reached or went away
    TIMEOUT = "timeout"  # a statement ran past statement_timeout
    CONFLICT = "conflict"  # serialization failure or deadlock: re-run the transaction
    LOCKED = "locked"  # SQLite's lock wait ran out
    INTEGRITY = "integrity"  # a constraint refused the change
    OTHER = "other"


def sqlstate(error: BaseException) -> str | None:
    """The SQLSTATE of a driver error wrapped by SQLAlchemy, where the driver reports one."""
    original = getattr(error, "orig", None)
    for candidate in (original, getattr(original, "__cause__", None)):
        code = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if isinstance(code, str):
            return code
    return None


def classify(error: BaseException) -> Failure:
    """Map an exception raised by SQLAlchemy or the driver to a `Failure`."""
    if isinstance(error, exc.TimeoutError):
        return Failure.POOL_EXHAUSTED
    if isinstance(error, WriteQueueTimeoutError):
        return Failure.LOCKED
    if isinstance(error, (ConnectionError, OSError)):
        return Failure.UNAVAILABLE
    if not isinstance(error, exc.DBAPIError):
        return Failure.OTHER
    code = sqlstate(error)
    if error.connection_invalidated or code in _UNAVAILABLE:
        return Failure.UNAVAILABLE
    if code in _RETRY_TRANSACTION:
        return Failure.CONFLICT
    if code == QUERY_CANCELED:
        return Failure.TIMEOUT
    if isinstance(error, exc.IntegrityError):
        return Failure.INTEGRITY
    if "database is locked" in str(error.orig):
        return Failure.LOCKED
    if isinstance(error, exc.InterfaceError):
        # asyncpg's "connection is closed" and friends arrive as InterfaceError.
        return Failure.UNAVAILABLE
    if isinstance(error, exc.OperationalError) and code is None:
        return Failure.UNAVAILABLE  # e.g. connection refused during connect
    return Failure.OTHER


def is_retryable(error: BaseException) -> bool:
    """True when re-running the whole transaction in a fresh session may succeed."""
    return classify(error) in (Failure.CONFLICT, Failure.LOCKED)
