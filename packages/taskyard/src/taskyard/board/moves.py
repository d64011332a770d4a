"""Which buttons a card has: the moves the task lifecycle allows a person to make.

Read from the lifecycle's own table (`taskyard.tasks.lifecycle`), never restated here: a
person may set any status a member may set with ``PATCH`` (``in_progress`` too: someone
working on it by hand), never ``dead``, and a dead task is retried, not moved.
"""

from __future__ import annotations

from taskyard.errors import ProblemError
from taskyard.tasks.lifecycle import RETRYABLE, Event, next_status
from taskyard.tasks.models import TaskStatus

__all__ = ["MOVES", "RETRY_FROM"]


def _edit_targets(status: TaskStatus) -> list[TaskStatus]:
    targets = []
    for target in TaskStatus:
        try:
            next_status(0, status, Event.EDIT, target=target)
        except ProblemError:
            continue
        if target is not status:
            targets.append(target)
    return targets


MOVES = {status: _edit_targets(status) for status in TaskStatus}
"""The columns a card in each status can be moved to by hand."""
RETRY_FROM = RETRYABLE
"""The statuses whose cards have a Retry button (``POST /tasks/{id}/retry``)."""
