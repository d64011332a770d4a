"""Errors raised by sessionwise.

Every error the toolkit raises on purpose derives from :class:`SessionwiseError`::

    SessionwiseError
    ├── ConfigurationError            no database URL, or options that cannot work together
    ├── DatabaseStateError            the Database was used before start() or after close(),
    │                                 or a second Database was published under one app's name
    ├── ConcurrentSessionUseError     one session used by two tasks at the same time
    │   └── SessionEndedError         a session used after its unit of work ended
    ├── NestedSessionError            a write session opened while the same task has one open
    ├── OpenStreamError               a request's session ended with a streamed result unread
    ├── ReadOnlySessionError          a read_session() tried to flush changes
    ├── WriteQueueTimeoutError        SQLite: no write turn within sqlite_busy_timeout
    ├── LazyLoadError                 an attribute load would need IO outside an awaited call
    │                                 (also a sqlalchemy.exc.MissingGreenlet, code ``xd2s``)
    └── IdempotencyError              sessionwise.idempotency (defined there):
        ├── InvalidIdempotencyKeyError    the Idempotency-Key header is not a valid key (400)
        ├── IdempotencyKeyReusedError     the key was used for a different request (422)
        └── IdempotencyKeyInUseError      a request with the key is still running (409)

Database failures themselves (pool timeouts, lost connections, integrity errors) are left as
the SQLAlchemy exceptions they are; :mod:`sessionwise.errors` classifies them by cause
(SQLSTATE, SQLite result code), and the FastAPI adapter's exception handlers
(`sessionwise.fastapi.install_error_handlers`) answer them 409, 503 or 504. Of the errors
above only `WriteQueueTimeoutError` is such a failure (a 503); the others are programming
errors, answered 500.
"""

from __future__ import annotations

from sqlalchemy.exc import MissingGreenlet

__all__ = [
    "ConcurrentSessionUseError",
    "ConfigurationError",
    "DatabaseStateError",
    "LazyLoadError",
    "NestedSessionError",
    "OpenStreamError",
    "ReadOnlySessionError",
    "SessionEndedError",
    "SessionwiseError",
    "WriteQueueTimeoutError",
]


class SessionwiseError(Exception):
    """Base class of every error sessionwise raises on purpose."""


class ConfigurationError(SessionwiseError, ValueError):
    """The options do not describe a usable `Database`, e.g. no URL was given anywhere."""


class DatabaseStateError(SessionwiseError, RuntimeError):
    """The `Database` is not in a state that allows the call (not started, or closed)."""


class ConcurrentSessionUseError(SessionwiseError, RuntimeError):
    """A session was used by a second task while the first was still awaiting it.

    An `AsyncSession` holds one connection and one transaction; two tasks interleaving on it
    corrupt each other's work. Open one session per task (`async with db.session()`).
    """


class NestedSessionError(SessionwiseError, RuntimeError):
    """A write session was opened while the same task already had one of the same `Database`.

    Each session is its own connection and transaction: the inner one would not see what the
    outer one flushed, could not be rolled back with it, and on SQLite would wait for the write
    lock the outer one holds (on an in-memory database, for its only connection). It is a
    programming error, raised at once on every backend and under the test plugin alike: pass
    the open session down, or run independent work in its own task.
    """


class SessionEndedError(ConcurrentSessionUseError):
    """A session was used after its unit of work (its block, or its request) had ended.

    A subclass of `ConcurrentSessionUseError` because the same guard refuses a second task
    still using a session while its owner ends it; the message says which case it was.
    """


class OpenStreamError(SessionwiseError, RuntimeError):
    """A request's session ended while a result of ``session.stream()`` was still unread.

    The rows of a streamed result come from a cursor of the session's connection; once the
    session ends (before the response is sent), a body still reading them would be cut
    short. Stream with `sessionwise.fastapi.SessionStreamingResponse` instead.
    """


class ReadOnlySessionError(SessionwiseError, RuntimeError):
    """A session opened with `Database.read_session()` tried to write."""


class WriteQueueTimeoutError(SessionwiseError, TimeoutError):
    """SQLite: this process's queue of write transactions did not reach us in time.

    Classified like SQLite's own SQLITE_BUSY: `Failure.LOCKED`, 503 in FastAPI.
    """


class LazyLoadError(SessionwiseError, MissingGreenlet):
    """An ORM attribute needed a database round trip outside an awaited session call.

    In asyncio, SQLAlchemy can only do IO inside an awaited call. Accessing an unloaded
    relationship or an expired column from plain attribute access cannot await, so it would
    fail with a bare ``MissingGreenlet``; this error names the attribute and the fix instead.
    It is a subclass of `sqlalchemy.exc.MissingGreenlet` (error code ``xd2s``), so existing
    handlers keep working.
    """
