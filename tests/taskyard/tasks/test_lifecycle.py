"""The transition table: what each status allows, and the two outcomes of a failed attempt."""

from __future__ import annotations

import pytest

from taskyard.errors import ProblemError, ProblemKind
from taskyard.tasks.lifecycle import CLAIMABLE, RETRYABLE, Event, next_status
from taskyard.tasks.models import TaskStatus as S

LEASE_EVENTS = (Event.HEARTBEAT, Event.COMPLETE, Event.FAIL, Event.EXPIRE)


def test_claims_take_pending_tasks_only() -> None:
    assert CLAIMABLE is S.PENDING
    assert next_status(1, S.PENDING, Event.CLAIM) is S.IN_PROGRESS
    for status in set(S) - {S.PENDING}:
        with pytest.raises(ProblemError) as raised:
            next_status(1, status, Event.CLAIM)
        assert raised.value.kind is ProblemKind.CONFLICT


def test_lease_events_need_a_task_in_progress() -> None:
    assert next_status(1, S.IN_PROGRESS, Event.HEARTBEAT) is S.IN_PROGRESS
    assert next_status(1, S.IN_PROGRESS, Event.COMPLETE) is S.DONE
    for event in LEASE_EVENTS:
        for status in set(S) - {S.IN_PROGRESS}:
            with pytest.raises(ProblemError):
                next_status(7, status, event)


@pytest.mark.parametrize("event", [Event.FAIL, Event.EXPIRE])
def test_a_failed_attempt_retries_until_the_last_one(event: Event) -> None:
    assert next_status(1, S.IN_PROGRESS, event, attempts_left=True) is S.PENDING
    assert next_status(1, S.IN_PROGRESS, event, attempts_left=False) is S.DEAD


def test_retry_requeues_dead_failed_and_cancelled_tasks() -> None:
    assert {S.DEAD, S.FAILED, S.CANCELLED} == RETRYABLE
    for status in RETRYABLE:
        assert next_status(1, status, Event.RETRY) is S.PENDING
    for status in set(S) - RETRYABLE:
        with pytest.raises(ProblemError):
            next_status(1, status, Event.RETRY)


def test_edits_set_any_status_but_dead_and_never_revive_a_dead_task() -> None:
    for status in set(S) - {S.DEAD}:
        for target in set(S) - {S.DEAD}:
            assert next_status(1, status, Event.EDIT, target=target) is target
        with pytest.raises(ProblemError):
            next_status(1, status, Event.EDIT, target=S.DEAD)
    assert next_status(1, S.DEAD, Event.EDIT, target=S.DEAD) is S.DEAD
    with pytest.raises(ProblemError) as raised:
        next_status(3, S.DEAD, Event.EDIT, target=S.PENDING)
    assert "retry" in str(raised.value)
