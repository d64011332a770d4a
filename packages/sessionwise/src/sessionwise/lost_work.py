"""Saying what was lost when a unit of work gives up (issue 17.7).

Work that runs after the response (a BackgroundTask, a lifespan job) has no client to hear
about a failure; if it fails quietly, rows go missing with no trace (302 orders, 296 audit
rows). `Database.run_transaction` logs one ERROR record on logger ``sessionwise`` when it
gives up: the work's name, the error's class and code (never SQL, parameters or driver
text), and the changes that were rolled back, e.g. ``1 new AuditEntry``. See
docs/background.md.
"""

from __future__ import annotations

import functools
import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from sessionwise.errors import cause

__all__ = ["PendingChanges", "log_given_up"]

logger = logging.getLogger("sessionwise")


class PendingChanges:
    """What a session is about to commit: ORM objects by change and model.

    Taken when the work returns (or raises), before the commit that may still fail: after
    the session's close there is nothing left to look at. Counts what the session holds as
    new, changed or deleted, and what it already flushed in this transaction (SQLAlchemy's
    ``SessionTransaction`` keeps those to expunge or expire them on rollback); SQL the work
    ran itself (``session.execute(insert(...))``) is not visible here.
    """

    def __init__(self, session: AsyncSession | None = None) -> None:
        self.changes: Counter[tuple[str, str]] = Counter()
        if session is None:
            return
        sync = session.sync_session
        transaction = sync.get_transaction()
        flushed_new = getattr(transaction, "_new", {}) if transaction is not None else {}
        flushed_deleted = getattr(transaction, "_deleted", {}) if transaction is not None else {}
        for kind, states in (
            ("new", [*sync.new, *(state.obj() for state in flushed_new)]),
            ("changed", list(sync.dirty)),
            ("deleted", [*sync.deleted, *(state.obj() for state in flushed_deleted)]),
        ):
            for obj in states:
                if obj is not None:
                    self.changes[(kind, type(obj).__name__)] += 1

    def __str__(self) -> str:
        if not self.changes:
            return "no ORM changes (SQL it executed itself, if any)"
        return ", ".join(f"{count} {kind} {model}" for (kind, model), count in self.changes.items())


def _name_of(work: Callable[..., Any]) -> str:
    while isinstance(work, functools.partial):
        work = work.func
    return str(getattr(work, "__qualname__", None) or repr(work))


def _describe(error: BaseException) -> str:
    # A database error's text carries the SQL, its parameters and the driver's message (with
    # row values, e.g. PostgreSQL's "Key (email)=(...) already exists"): none of it belongs in
    # a log. Its class and code say what happened; an application's own error keeps its text.
    if isinstance(error, SQLAlchemyError):
        code = cause(error)
        return f"{type(error).__name__} ({code})" if code else type(error).__name__
    return f"{type(error).__name__}: {error}"


def log_given_up(
    work: Callable[..., Any], error: BaseException, attempts: int, pending: PendingChanges
) -> None:
    """One ERROR record: *work* failed for good, and what its transaction lost."""
    logger.error(
        "run_transaction gave up on %s after %d attempt(s): %s; rolled back: %s",
        _name_of(work),
        attempts,
        _describe(error),
        pending,
    )
