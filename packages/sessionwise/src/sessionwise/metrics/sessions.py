"""A session's meter: hold time and outcome, the wait for its connection, slow sessions.

`Database` opens a `SessionRecord` for each session of a metered pool and closes it when the
unit of work is over (`SessionMeter.opened` / `SessionMeter.ended`): the hold time runs from
the session's creation until its connection is back in the pool, the outcome says how it
ended. The wait for the connection runs from the session's first IO call (the guard marks
it, `sessionwise.guards`) to the pool's ``checkout`` of its connection, read in the
session's ``after_begin`` event, which also lets the pool meter count the session's
statements on that connection.

A session held longer than ``slow_session_warning`` seconds logs one WARNING on the
``sessionwise`` logger naming what held it (``session.info[SESSION_LABEL_KEY]``, set by an
adapter: the FastAPI adapter puts the request's method and route template there, never its
path), the hold time and the statement count. Neither the record nor a metric carries SQL,
parameters or any request data.
"""

from __future__ import annotations

import logging
from time import perf_counter
from typing import Any

from sqlalchemy import event
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction

from sessionwise.errors import Failure, classify
from sessionwise.guards import SESSION_RECORD_KEY
from sessionwise.metrics.pools import CHECKED_OUT_AT, HELD_BY
from sessionwise.metrics.recorder import MetricsRecorder, SessionOutcome

__all__ = ["SESSION_LABEL_KEY", "SessionMeter", "SessionRecord", "outcome_of"]

logger = logging.getLogger("sessionwise")

# What an adapter calls the work a session does, e.g. "GET /api/v1/tasks/{task_id}".
SESSION_LABEL_KEY = "sessionwise.label"


class SessionRecord:
    """One session's measurements so far."""

    __slots__ = ("asked_at", "connected", "meter", "started", "statements")

    def __init__(self, meter: SessionMeter) -> None:
        self.meter = meter
        self.started = perf_counter()
        self.asked_at: float | None = None  # the first IO call (set by the guard)
        self.connected = False
        self.statements = 0


def outcome_of(error: BaseException | None, *, write: bool) -> tuple[SessionOutcome, str | None]:
    """The outcome of a unit of work that ended with *error* (None: without one), and its cause."""
    if error is None:
        return (SessionOutcome.COMMITTED if write else SessionOutcome.CLOSED), None
    failure = classify(error)
    if failure is Failure.OTHER and not isinstance(error, SQLAlchemyError):
        return SessionOutcome.ROLLED_BACK, None  # the application's error, or a cancellation
    return SessionOutcome.FAILED, failure.value


class SessionMeter:
    """The sessions of one pool."""

    def __init__(
        self, pool_name: str, recorder: MetricsRecorder, slow_session_warning: float | None
    ) -> None:
        self.pool_name = pool_name
        self.recorder = recorder
        self.slow_after = slow_session_warning

    def opened(self, session: AsyncSession) -> SessionRecord:
        record = SessionRecord(self)
        session.info[SESSION_RECORD_KEY] = record
        return record

    async def commit(self, session: AsyncSession) -> None:
        started = perf_counter()
        await session.commit()
        self.recorder.session_committed(self.pool_name, perf_counter() - started)

    def ended(
        self,
        session: AsyncSession,
        record: SessionRecord,
        error: BaseException | None,
        *,
        write: bool,
    ) -> None:
        held = perf_counter() - record.started
        outcome, cause = outcome_of(error, write=write)
        if cause == Failure.POOL_EXHAUSTED.value:
            self.recorder.connection_timed_out(self.pool_name)
        self.recorder.session_ended(self.pool_name, outcome, cause, held)
        if self.slow_after is not None and held > self.slow_after:
            label = session.info.get(SESSION_LABEL_KEY) or "a session without a label"
            logger.warning(
                "session held %.3f s (slow_session_warning=%g s) by %s: %d statements, %s",
                held,
                self.slow_after,
                label,
                record.statements,
                outcome.value,
                extra={
                    "session_label": label,
                    "hold_seconds": round(held, 6),
                    "statements": record.statements,
                    "outcome": outcome.value,
                },
            )


def _began(session: Session, _transaction: SessionTransaction, connection: Any) -> None:
    record = session.info.get(SESSION_RECORD_KEY)
    if not isinstance(record, SessionRecord):
        return
    info = connection.info
    info[HELD_BY] = record  # the pool meter counts its statements until checkin
    checked_out = info.get(CHECKED_OUT_AT)
    if not record.connected and record.asked_at is not None and checked_out is not None:
        # Once per session: the wait is before its first statement, not after a commit.
        record.connected = True
        record.meter.recorder.connection_waited(
            record.meter.pool_name, max(0.0, checked_out - record.asked_at)
        )


_watched: set[type[Session]] = set()


def watch_session_class(session_class: type[AsyncSession]) -> None:
    """Listen for the sessions of *session_class* getting their connection (once per class)."""
    sync_class = session_class.sync_session_class
    if sync_class not in _watched:
        event.listen(sync_class, "after_begin", _began)
        _watched.add(sync_class)
