"""A task's lifecycle: every allowed transition, in one table that the service consults.

::

                 create / retry                claim
    (new) ──────────────────────▶ pending ─────────────▶ in_progress ──complete──▶ done
                                    ▲  ▲                  │  │  │
                                    │  └──fail / expire───┘  │  └─heartbeat (stays)
                                    │   (attempts left:      │
                                    │    after a backoff)    └─fail / expire, last attempt─▶ dead
                                    └──────────────retry (a member)─────────────────────────┘

A member may also set a status by hand (``PATCH``, the `Event.EDIT` rows), from any status
but ``dead``: ``failed`` gives up without a retry; ``in_progress`` set by hand (a person
working on it) keeps whatever lease the task has, and without one it is never taken back. A
dead task goes back to work through ``retry`` only, which also gives it a fresh set of
attempts (``retry`` also requeues ``failed`` and ``cancelled`` tasks).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from taskyard.errors import ProblemError, ProblemKind
from taskyard.tasks.models import TaskStatus

__all__ = ["CLAIMABLE", "RETRYABLE", "Event", "IllegalTransitionError", "next_status"]

_P, _R, _D = TaskStatus.PENDING, TaskStatus.IN_PROGRESS, TaskStatus.DONE
_F, _C, _X = TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.DEAD


class Event(enum.StrEnum):
    CLAIM = "claim"
    HEARTBEAT = "heartbeat"
    COMPLETE = "complete"
    FAIL = "fail"
    EXPIRE = "expire"
    RETRY = "retry"
    EDIT = "edit"


# (status, event) -> the statuses it may lead to. Where there are two, the first is taken
# while attempts are left and the second (dead) when the last one has failed.
_TRANSITIONS: Mapping[tuple[TaskStatus, Event], tuple[TaskStatus, ...]] = {
    (_P, Event.CLAIM): (_R,),
    (_R, Event.HEARTBEAT): (_R,),
    (_R, Event.COMPLETE): (_D,),
    (_R, Event.FAIL): (_P, _X),
    (_R, Event.EXPIRE): (_P, _X),
    **{(status, Event.RETRY): (_P,) for status in (_X, _F, _C)},
    **{(status, Event.EDIT): (_P, _R, _D, _F, _C) for status in (_P, _R, _D, _F, _C)},
    # The same status again is no change (a client sending back the whole task).
    (_X, Event.EDIT): (_X,),
}

CLAIMABLE = _P
"""The one status a claim takes tasks from (when their ``run_after`` has come)."""
RETRYABLE = frozenset(status for status, event in _TRANSITIONS if event is Event.RETRY)


class IllegalTransitionError(ProblemError):
    """The task's status does not allow the event: a 409."""

    def __init__(self, task_id: int, status: TaskStatus, event: Event) -> None:
        super().__init__(ProblemKind.CONFLICT, f"task {task_id} is {status}: cannot {event} it")


def next_status(
    task_id: int,
    status: TaskStatus,
    event: Event,
    *,
    target: TaskStatus | None = None,
    attempts_left: bool = True,
) -> TaskStatus:
    """The status *event* takes a task in *status* to, or `IllegalTransitionError`.

    *target* is the status an `Event.EDIT` asks for; *attempts_left* picks between the two
    outcomes of a failure or an expired lease.
    """
    allowed = _TRANSITIONS.get((status, event))
    if allowed is None:
        raise IllegalTransitionError(task_id, status, event)
    if target is not None:
        if target not in allowed:
            raise ProblemError(
                ProblemKind.CONFLICT,
                f"task {task_id} is {status}: its status cannot be set to {target}"
                + (" (POST /tasks/{id}/retry requeues it)" if status is _X else ""),
            )
        return target
    if len(allowed) == 2:
        return allowed[0] if attempts_left else allowed[1]
    return allowed[0]
