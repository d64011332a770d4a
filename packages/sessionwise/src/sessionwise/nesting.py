"""Refuse a write session opened inside another one of the same task (`NestedSessionError`).

An endpoint that flushes, then calls a helper doing ``async with db.session()``, opens a second
connection and transaction while the first is still open. The inner one does not see what the
outer one flushed and commits on its own; on SQLite it waits for the write lock the outer one
holds (a file: `WriteQueueTimeoutError` after ``sqlite_busy_timeout``; in memory: for the only
pooled connection, until ``pool_timeout``), and under the test plugin both ride on one
connection and it passes (issue 9, finding 3). So it is refused at once, the same everywhere.

Keyed by task, not by a context variable alone: child tasks inherit the context of the task that
started them, and a job started with ``asyncio.create_task`` (or a request served in a task of
its own) is independent work that may open its own session.

What stays allowed:

* a ``read_session()`` inside a write session (and a write session inside a read session): a
  separate transaction that sees what was committed, not the outer one's pending changes;
* except on an in-memory SQLite database, which has one pooled connection: there any session
  opened while the same task holds another would wait for itself, so every nesting is refused.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

from sessionwise.exceptions import NestedSessionError

__all__ = ["OpenSessions"]

_FIX = (
    "Pass the open session down to the code that needs it (e.g. `helper(session)`), or run "
    "independent work in its own task (`asyncio.create_task(...)`, a BackgroundTask) with its "
    "own `async with db.session()`."
)


class OpenSessions:
    """The sessions each task has open on one `Database`: write (True) or read (False)."""

    def __init__(self) -> None:
        self._by_task: weakref.WeakKeyDictionary[asyncio.Task[object], list[bool]] = (
            weakref.WeakKeyDictionary()
        )

    @contextmanager
    def opening(self, *, write: bool, one_connection: bool) -> Iterator[None]:
        """Register a session for the current task while the block runs, or refuse it.

        Args:
            write: A write session (``db.session()``) rather than a read session.
            one_connection: The database has a single pooled connection (in-memory SQLite).
        """
        try:
            task = asyncio.current_task()
        except RuntimeError:  # no running event loop: nothing to nest in
            task = None
        if task is None:
            yield
            return
        open_here = self._by_task.setdefault(task, [])
        if open_here and (one_connection or (write and True in open_here)):
            raise NestedSessionError(
                _message(task, write=write, one_connection=one_connection, holds=open_here)
            )
        open_here.append(write)
        try:
            yield
        finally:
            # The list, not a lookup by the current task: cleanup may run in another task.
            open_here.remove(write)


def _message(
    task: asyncio.Task[object], *, write: bool, one_connection: bool, holds: list[bool]
) -> str:
    held = "a write session" if True in holds else "a read session"
    kind = "write session (db.session())" if write else "read session (db.read_session())"
    if one_connection:
        reason = (
            "This in-memory SQLite database has a single pooled connection, held by the open "
            "session: the new one would wait for it until pool_timeout."
        )
    else:
        reason = (
            "A session is its own connection and transaction: the new one would not see what "
            "the open one flushed, would commit on its own, and on SQLite would wait for the "
            "write lock the open one holds."
        )
    return (
        f"a {kind} was opened in task {task.get_name()!r} while that task still has {held} "
        f"of the same Database open. {reason} {_FIX}"
    )
