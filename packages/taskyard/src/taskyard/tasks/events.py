"""What the queue reports (tasks created, claimed, completed, failed; leases that ran out),
once it is committed.

The task service says what happened (`QueueEvents`); the report is held on the session and
delivered after its transaction commits, so a claim that rolls back (a failed commit, an
error later in the request) is never counted. An app without metrics passes no `QueueEvents`
and nothing is held.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

__all__ = ["QueueEvents", "after_commit"]

_PENDING = "taskyard.after_commit"


class QueueEvents(Protocol):
    """Receives the queue's events (`taskyard.operations.metrics.QueueMetrics`)."""

    def task_created(self) -> None: ...

    def task_claimed(self, waited: float) -> None:
        """A worker claimed a task that had been due for *waited* seconds."""
        ...

    def leases_expired(self, count: int) -> None:
        """*count* leases ran out and were taken back (their workers vanished)."""
        ...

    def tasks_completed(self, count: int) -> None:
        """A worker completed *count* tasks (one, or a batch)."""
        ...

    def task_failed(self, *, dead: bool) -> None:
        """A worker failed an attempt; *dead*: it was the task's last."""
        ...


def after_commit(session: AsyncSession, report: Callable[[], None]) -> None:
    """Call *report* once *session*'s transaction has committed; never if it rolls back."""
    session.info.setdefault(_PENDING, []).append(report)


@event.listens_for(Session, "after_commit")
def _deliver(session: Session) -> None:
    for report in session.info.pop(_PENDING, ()):
        report()


@event.listens_for(Session, "after_rollback")
def _discard(session: Session) -> None:
    session.info.pop(_PENDING, None)
