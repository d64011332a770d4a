"""The SQLite profile: WAL, foreign keys, a busy timeout, and IMMEDIATE write transactions.

SQLite has one writer at a time. A transaction that reads first and writes later starts as a
reader and must upgrade its lock; when another writer got there first, the upgrade fails at once
with "database is locked" (``busy_timeout`` does not help a transaction that already read).
Beginning every write transaction with ``BEGIN IMMEDIATE`` takes the write lock up front, where
``busy_timeout`` *does* wait, so concurrent writers queue instead of failing.

SQLAlchemy can only control BEGIN if the driver's own implicit transaction handling is off:
this is the documented recipe (SQLAlchemy docs, "Enabling Non-Legacy SQLite Transactional
Modes with the sqlite3 or aiosqlite driver"), with IMMEDIATE instead of a plain BEGIN. Read
sessions (`Database.read_session()`) begin DEFERRED so that readers never take the write lock,
and with ``PRAGMA query_only`` on, so that SQLite refuses their writes ("attempt to write a
readonly database", as PostgreSQL refuses them in a READ ONLY transaction) instead of running
them and discarding them at the rollback; it is turned off again when the connection goes back
to the pool.

``busy_timeout`` alone is not fair, though: every waiting writer sleeps and polls on its own
(1, 2, 5, ... up to 100 ms), so under many concurrent writers a late one can win again and
again while an early one runs out of time and fails "database is locked". Within one process
write sessions therefore queue first on an asyncio lock (FIFO), taken right before their
first statement and given back when the session closes, so only the head of the queue polls the
file lock. Other processes on the same file still meet ``busy_timeout``.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import event
from sqlalchemy.engine import URL, Connection
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import AsyncAdaptedQueuePool, PoolResetState

from sessionwise.config import DatabaseConfig
from sessionwise.exceptions import WriteQueueTimeoutError

if TYPE_CHECKING:
    import aiosqlite

__all__ = [
    "READ_ONLY_OPTION",
    "WriteTurn",
    "WriterQueue",
    "install_sqlite_profile",
    "is_memory_url",
    "sqlite_engine_options",
]

# Execution option set on the engine that read sessions use; the BEGIN hook reads it.
READ_ONLY_OPTION = "sessionwise_read_only"
# In a pooled connection's info while its PRAGMA query_only is on.
_QUERY_ONLY_KEY = "sessionwise.query_only"


class _RollbackOnCloseConnection(sqlite3.Connection):
    """A ``sqlite3`` connection that rolls back its open transaction before closing.

    A session cancelled mid-query leaves the query's statement unfinalized in aiosqlite's
    cursor while SQLAlchemy closes the connection. ``sqlite3_close_v2()`` then only turns the
    connection into a zombie that keeps its transaction, and with it the write lock, until the
    statement is garbage collected; every other writer meanwhile fails with "database is
    locked" (SQLite docs, ``sqlite3_close_v2``). ROLLBACK works with statements pending.
    """

    def close(self) -> None:
        try:
            if self.in_transaction:
                self.rollback()
        except sqlite3.Error:
            pass  # already closed (aiosqlite may close twice), or closing regardless
        super().close()


@functools.cache
def _aiosqlite_connection_class() -> type[aiosqlite.Connection]:
    import aiosqlite  # imported late: the sqlite extra is optional

    class SingleStopConnection(aiosqlite.Connection):
        """An aiosqlite connection that stops once and interrupts cancelled statements.

        ``stop()`` queues one shutdown, however often called.

        SQLAlchemy hard-closes a connection whose query was cancelled: it starts a graceful
        ``close()`` in a shielded task and, when the cancellation interrupts the wait, calls
        ``stop()``. The shielded ``close()`` then calls ``stop()`` again, queued behind the
        first; the worker thread ends at the first, so that future never resolves and the
        task waits forever: one leaked task per cancelled query, and ``asyncio.run()`` hangs
        on them at exit. Handing every caller the first stop's future ends them all.
        """

        _stopping: asyncio.Future[Any] | None = None

        def stop(self) -> asyncio.Future[Any] | None:
            if self._stopping is None:
                self._stopping = super().stop()
            return self._stopping

        # The call running in the worker thread right now, as a one-item list whose item
        # turns True when the awaiting task is cancelled (read by `_abort_if_cancelled`).
        _call_in_thread: list[bool] | None = None

        async def _execute(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
            # A cancelled await does not stop the worker thread: the statement runs on to its
            # end, holding its locks (for a write transaction, the write lock), and the
            # connection's close waits behind it in the same thread (issue 9, finding 9).
            # So each call carries a flag that the cancellation raises and SQLite's progress
            # handler reads while the statement runs, aborting it with SQLITE_INTERRUPT.
            # Not sqlite3_interrupt(): its flag stays set while any statement is pending
            # (a SELECT whose rows were never fetched), and would abort the ROLLBACK that
            # closing the connection runs next (SQLite docs, "Interrupt A Long-Running Query").
            cancelled = [False]

            def run() -> Any:
                self._call_in_thread = cancelled
                try:
                    return fn(*args, **kwargs)
                finally:
                    self._call_in_thread = None

            try:
                return await super()._execute(run)  # type: ignore[no-untyped-call]
            except asyncio.CancelledError:
                cancelled[0] = True
                raise

        def _abort_if_cancelled(self) -> int:
            call = self._call_in_thread
            return 1 if call is not None and call[0] else 0

    return SingleStopConnection


# SQLite calls the progress handler every this many virtual machine instructions: often
# enough to stop a long statement within microseconds, and never for a short one.
_PROGRESS_EVERY = 1000


def _connect_aiosqlite(database: str, **kwargs: Any) -> aiosqlite.Connection:
    """``aiosqlite.connect()`` with `SingleStopConnection` (SQLAlchemy's ``async_creator_fn``)."""

    def connect() -> sqlite3.Connection:  # runs in the connection's worker thread
        dbapi_connection: sqlite3.Connection = sqlite3.connect(database, **kwargs)
        abort: Callable[[], int] = getattr(connection, "_abort_if_cancelled")  # noqa: B009
        dbapi_connection.set_progress_handler(abort, _PROGRESS_EVERY)
        return dbapi_connection

    connection = _aiosqlite_connection_class()(connect, iter_chunk_size=64)
    # A daemon worker thread, as SQLAlchemy makes it for the connections it creates itself:
    # a connection never closed must not keep the interpreter from exiting.
    connection._thread.daemon = True
    return connection


def is_memory_url(url: URL) -> bool:
    database = url.database or ""
    return database in ("", ":memory:") or "mode=memory" in database


def sqlite_engine_options(url: URL, config: DatabaseConfig) -> tuple[URL, dict[str, Any]]:
    """The URL and `create_async_engine` keyword arguments for a SQLite database."""
    options: dict[str, Any] = {
        "poolclass": AsyncAdaptedQueuePool,
        "pool_timeout": config.pool_timeout,
        "pool_pre_ping": False,  # a local file cannot drop a connection
        "connect_args": {
            "timeout": config.sqlite_busy_timeout,
            "factory": _RollbackOnCloseConnection,
            "async_creator_fn": _connect_aiosqlite,
        },
    }
    if config.pool_recycle is not None:
        options["pool_recycle"] = config.pool_recycle
    if is_memory_url(url):
        # ":memory:" would be one private database per connection, and SQLAlchemy's default
        # StaticPool shares one connection (and so one transaction) between all coroutines: a
        # rollback in one discards another's work. Instead: a named shared-cache database with
        # one pooled connection, so sessions take turns, each with its own transaction. The
        # Database keeps one extra connection open so the data lives until close().
        name = f"sessionwise-{uuid.uuid4().hex}"
        url = url.set(database=f"file:{name}?mode=memory&cache=shared", query={"uri": "true"})
        options.update(pool_size=1, max_overflow=0)
    else:
        options.update(pool_size=config.pool_size, max_overflow=config.max_overflow)
    return url, options


def install_sqlite_profile(engine: AsyncEngine, config: DatabaseConfig) -> None:
    """Register the connect and begin hooks on *engine*."""
    memory = is_memory_url(engine.url) or "mode=memory" in str(engine.url)
    pragmas = [
        "PRAGMA foreign_keys=ON",
        f"PRAGMA busy_timeout={int(config.sqlite_busy_timeout * 1000)}",
    ]
    if not memory:
        pragmas += ["PRAGMA journal_mode=WAL", f"PRAGMA synchronous={config.sqlite_synchronous}"]

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Driver-managed BEGIN off first: PRAGMA foreign_keys is a no-op inside a transaction.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            for pragma in pragmas:
                cursor.execute(pragma)
        finally:
            cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        read_only = connection.get_execution_options().get(READ_ONLY_OPTION, False)
        if read_only:
            # Refuses writes of this connection until turned off (sqlite.org/pragma.html).
            connection.exec_driver_sql("PRAGMA query_only = ON")
            connection.info[_QUERY_ONLY_KEY] = True
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    @event.listens_for(engine.sync_engine, "reset")
    def _on_reset(dbapi_connection: Any, record: Any, reset_state: PoolResetState) -> None:
        # A COMMIT that SQLite refuses (a deferred foreign key, SQLITE_BUSY) leaves the
        # transaction open (sqlite.org/lang_transaction.html, "Response To Errors Within A
        # Transaction"), yet SQLAlchemy counts it as ended and skips the rollback-on-return.
        # The pooled connection would keep the write lock and fail its next BEGIN.
        if not reset_state.asyncio_safe or reset_state.terminate_only:
            return
        if dbapi_connection.driver_connection.in_transaction:
            dbapi_connection.rollback()
        if record.info.pop(_QUERY_ONLY_KEY, False):
            # A read session's connection: writable again for whoever checks it out next.
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute("PRAGMA query_only = OFF")
            finally:
                cursor.close()


class WriterQueue:
    """In-process FIFO of SQLite write sessions (see the module docstring).

    A write session takes its turn right before its first statement (the guarded session
    methods call `WriteTurn.take`) and gives it back after it closed, so the wait happens in
    plain asyncio: a session cancelled while waiting has taken nothing and checked out no
    connection.
    """

    def __init__(self, timeout: float) -> None:
        self._lock = asyncio.Lock()
        self._timeout = timeout
        self._holder: asyncio.Task[Any] | None = None

    def turn(self) -> WriteTurn:
        return WriteTurn(self)


class WriteTurn:
    """One write session's place in a `WriterQueue`."""

    def __init__(self, queue: WriterQueue) -> None:
        self._queue = queue
        self.held = False

    async def take(self) -> None:
        queue = self._queue
        task = asyncio.current_task()
        if queue._holder is not None and queue._holder is task:
            raise WriteQueueTimeoutError(
                "a second write session was opened on this SQLite database while the first "
                "is still open in the same task: SQLite has one writer, so it would wait for "
                "a turn that never comes. Finish the first session, or read with "
                "db.read_session()."
            )
        try:
            # asyncio.timeout, not asyncio.wait_for: on Python 3.11 wait_for returns the
            # result when the inner await finished just as the task was cancelled, and the
            # cancellation is lost (cpython gh-86296): a cancelled task then runs on.
            async with asyncio.timeout(queue._timeout or None):
                await queue._lock.acquire()
        except TimeoutError:
            raise WriteQueueTimeoutError(
                f"no write turn on this SQLite database within {queue._timeout:g} s "
                "(sqlite_busy_timeout): other write sessions held it all that time. Keep "
                "write sessions short, and read with db.read_session()."
            ) from None
        queue._holder = task
        self.held = True

    def give_back(self) -> None:
        if self.held:
            self.held = False
            self._queue._holder = None
            self._queue._lock.release()
