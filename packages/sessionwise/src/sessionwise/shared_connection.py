"""Sessions of separate tasks taking turns on one connection (the test plugin's).

`sessionwise.testing` joins every session of a test to one connection and its outer
transaction; a write session rides on it as a SAVEPOINT (SQLAlchemy's ``create_savepoint``
join mode). Savepoints nest: one begun after another must end before it. Two tasks that each
open ``db.session()`` and interleave (what `ConcurrentSessionUseError` recommends) used to break
that order: the first to finish released the other's savepoint with its own, and the other
failed with ``savepoint "sa_savepoint_2" does not exist`` (issue 9, finding 4).

`SharedConnectionTurns` is the `CallGate` of those sessions:

* one call at a time on the connection (a driver connection runs one statement at a time);
* a write session that is open runs when it is on top: one below waits until those above it
  have closed, and so does its close;
* a write session begins (its first call pushes its savepoint) on top of sessions of its own
  task and of the tasks it was started from (a request served while the test holds
  ``db_session``, jobs gathered by a task that holds a session: they await it), and otherwise
  waits until the sessions of other tasks have closed. Two sibling tasks' write sessions thus
  run one after the other, so that one's rollback cannot undo what the other committed inside
  its savepoint. The tasks a task was started from are known from a context variable, which a
  new task inherits;
* read sessions have no savepoint (``rollback_only`` join mode: closing one leaves the
  transaction alone) and may run whenever the connection is free. While a read session runs,
  its writes are refused as in production: on PostgreSQL in a ``SAVEPOINT`` with
  ``SET LOCAL transaction_read_only = on``, rolled back (which undoes the setting) before any
  other session uses the connection; on SQLite with ``PRAGMA query_only``.

Waiting is first come, first served among the sessions that may run, and bounded by
``pool_timeout``; running out of it fails like an exhausted pool (``sqlalchemy.exc.
TimeoutError``), naming the likely cause: tasks waiting for each other while each holds a
session of the test.
"""

from __future__ import annotations

import asyncio
import contextvars
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from sqlalchemy import exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from sessionwise.guards import READ_ONLY_KEY

__all__ = ["SharedConnectionTurns"]

_READ_SCOPE = "sessionwise_read_only"
# Methods during which a read session's refusal of writes is not set up: they end or reset
# its transaction, or (streams) return a cursor that must outlive the call.
_NO_READ_SCOPE = frozenset({"rollback", "commit", "reset", "stream", "stream_scalars"})
# The write sessions begun in this task and in the tasks it was started from.
_begun_here: contextvars.ContextVar[frozenset[weakref.ref[AsyncSession]]] = contextvars.ContextVar(
    "sessionwise_begun_here", default=frozenset()
)


class SharedConnectionTurns:
    """The `CallGate` of the sessions joined to one test connection (see the module doc)."""

    def __init__(self, connection: AsyncConnection, timeout: float) -> None:
        self._connection = connection
        self._postgres = connection.dialect.name == "postgresql"
        self._timeout = timeout
        self._busy = False
        self._stack: list[AsyncSession] = []  # write sessions, in the order they began
        self._read_scope: AsyncSession | None = None  # read session whose refusal is set up
        self._waiters: deque[tuple[Callable[[], bool], asyncio.Future[None]]] = deque()

    @asynccontextmanager
    async def call(self, session: AsyncSession, method: str) -> AsyncIterator[None]:
        read = bool(session.info.get(READ_ONLY_KEY))
        visible = _begun_here.get()
        await self._take(lambda: read or self._may_write(session, visible))
        try:
            if self._read_scope is not None and self._read_scope is not session:
                await self._end_read_scope()
            if read and self._read_scope is None and method not in _NO_READ_SCOPE:
                await self._begin_read_scope(session)
            if not read and session not in self._stack:
                self._stack.append(session)
                _begun_here.set(visible | {weakref.ref(session)})
            yield
        finally:
            self._give_back()

    @asynccontextmanager
    async def closing(self, session: AsyncSession) -> AsyncIterator[None]:
        # Not begun: nothing to wait for. Begun: on top, so its savepoint ends last.
        await self._take(lambda: session not in self._stack or self._stack[-1] is session)
        try:
            if self._read_scope is not None:
                await self._end_read_scope()
            yield
        finally:
            if session in self._stack:
                self._stack.remove(session)
            self._give_back()

    # -- turns -----------------------------------------------------------------------------

    def _may_write(
        self, session: AsyncSession, visible: frozenset[weakref.ref[AsyncSession]]
    ) -> bool:
        if session in self._stack:
            return self._stack[-1] is session
        return all(weakref.ref(below) in visible for below in self._stack)

    async def _take(self, may_run: Callable[[], bool]) -> None:
        if not self._busy and not self._waiters and may_run():
            self._busy = True
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (may_run, future)
        self._waiters.append(entry)
        self._grant()
        try:
            # asyncio.timeout, not asyncio.wait_for: on Python 3.11 wait_for returns the
            # result when the inner await finished just as the task was cancelled, and the
            # cancellation is lost (cpython gh-86296): a cancelled task then runs on.
            async with asyncio.timeout(self._timeout):
                await asyncio.shield(future)
        except BaseException as error:
            if entry in self._waiters:
                self._waiters.remove(entry)
            if future.done() and not future.cancelled():
                self._give_back()  # granted just as we stopped waiting: pass it on
            else:
                future.cancel()
            if isinstance(error, TimeoutError):
                raise exc.TimeoutError(
                    f"a session waited {self._timeout:g} s (pool_timeout) for its turn on the "
                    "test's shared connection (sessionwise.testing). Sessions of the test take "
                    "turns on it, and a write session waits for those begun after it to end: "
                    "look for tasks that wait for each other while each holds a session."
                ) from None
            raise

    def _give_back(self) -> None:
        self._busy = False
        self._grant()

    def _grant(self) -> None:
        if self._busy:
            return
        for entry in list(self._waiters):
            may_run, future = entry
            if future.done():
                self._waiters.remove(entry)
            elif may_run():
                self._waiters.remove(entry)
                self._busy = True
                future.set_result(None)
                return

    # -- read sessions refuse writes -----------------------------------------------------------

    async def _begin_read_scope(self, session: AsyncSession) -> None:
        if self._postgres:
            # Undone by the ROLLBACK TO SAVEPOINT in _end_read_scope: a SET LOCAL made in a
            # subtransaction is reverted when it rolls back (PostgreSQL docs, "SET").
            await self._connection.exec_driver_sql(f"SAVEPOINT {_READ_SCOPE}")
            await self._connection.exec_driver_sql("SET LOCAL transaction_read_only = on")
        else:
            await self._connection.exec_driver_sql("PRAGMA query_only = ON")
        self._read_scope = session

    async def _end_read_scope(self) -> None:
        self._read_scope = None
        if self._postgres:
            await self._connection.exec_driver_sql(f"ROLLBACK TO SAVEPOINT {_READ_SCOPE}")
            await self._connection.exec_driver_sql(f"RELEASE SAVEPOINT {_READ_SCOPE}")
        else:
            await self._connection.exec_driver_sql("PRAGMA query_only = OFF")
