"""Work to run once a session's unit of work has committed: `after_commit`.

SQLAlchemy's own ``after_commit`` session event is synchronous and may not emit SQL (Session
events docs: "the Session is not in an active transaction ... and therefore can not emit
SQL"). Some work belongs exactly there: recording where the commit landed in the WAL, so that
later reads on replicas can wait for it (`sessionwise.replicas`). A value that only exists
after the commit cannot be written inside the transaction.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["after_commit", "run_after_commit"]

_KEY = "sessionwise.after_commit"


def after_commit(session: AsyncSession, callback: Callable[[], Awaitable[None]]) -> None:
    """Run ``await callback()`` after *session*'s unit of work committed (not on rollback).

    For a session of `Database.session` (and the FastAPI write session): the callback runs
    after the commit and after the session closed and gave its connection back, before the
    ``async with`` block returns, so in FastAPI before the response is sent. It runs outside
    any session: it opens its own connection if it needs one. An exception it raises reaches
    the caller although the commit stands; a callback whose failure must not fail the work
    catches its own errors.
    """
    callbacks: list[Callable[[], Awaitable[None]]] = session.info.setdefault(_KEY, [])
    callbacks.append(callback)


async def run_after_commit(session: AsyncSession) -> None:
    for callback in session.info.pop(_KEY, ()):
        await callback()
