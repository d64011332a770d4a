"""Claims that wait: short attempts, each in a session of its own, and waits between them.

A waiting claim never holds a database connection while it waits: each attempt opens a
session, claims (or learns that there is nothing, and when there will be by time alone),
commits and gives the connection back; the wait in between is on the in-memory `Place` of
`taskyard.tasks.wakeups`. 200 waiting agents on a pool of 10 leave the pool to everybody else.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from taskyard.errors import ProblemError, ProblemKind
from taskyard.tasks.service import ClaimMiss
from taskyard.tasks.wakeups import WaitEnd, WakeupHub

__all__ = ["Answered", "ClaimAttempt", "claim_waiting", "shutting_down"]

_Answer = TypeVar("_Answer")


@dataclass(frozen=True, slots=True)
class Answered(Generic[_Answer]):
    """An attempt that ends the request: its *answer*, and whether to *pass_on* a wake-up
    (it claimed, and more work is due)."""

    answer: _Answer
    pass_on: bool


ClaimAttempt = Callable[[bool], Awaitable["Answered[_Answer] | ClaimMiss"]]
"""``attempt(final)``: one claim in a session of its own. With *final*, a claim that finds
nothing answers too (204); without, it returns the `ClaimMiss`."""


def shutting_down() -> ProblemError:
    # 503, not 204: the claim did not run to its end, and a retry (elsewhere, or after the
    # restart) may find work; a 503 is never stored under an Idempotency-Key.
    return ProblemError(
        ProblemKind.SERVICE_UNAVAILABLE,
        "the server is shutting down; claim again",
        headers={"Retry-After": "1"},
    )


async def claim_waiting(
    wakeups: WakeupHub,
    wait_seconds: float,
    attempt: ClaimAttempt[_Answer],
    on_timeout: Callable[[], Awaitable[_Answer]],
    disconnected: Callable[[], Awaitable[object]],
) -> _Answer | None:
    """Claim; if nothing is claimable, wait up to *wait_seconds* for a wake-up and try again.

    *on_timeout* answers when the time is up without a wake-up (nothing became claimable:
    the hub hears of every task that does, so no last attempt is needed unless the answer
    must be stored, which *on_timeout* decides). None when the client is gone
    (*disconnected* returned): nothing was claimed for it, and nobody reads the answer.
    """
    deadline = asyncio.get_running_loop().time() + wait_seconds
    mark = wakeups.mark()
    outcome = await attempt(wait_seconds <= 0)
    if isinstance(outcome, Answered):
        return outcome.answer
    # Uvicorn does not cancel a request whose client went away; only receive() tells.
    gone = asyncio.ensure_future(disconnected())
    try:
        async with wakeups.line(outcome.project_id) as place:
            while True:
                if outcome.next_claimable_at is not None:
                    wakeups.wake_at(outcome.project_id, outcome.next_claimable_at)
                end = await place.wait(deadline, mark, gone)
                if end is WaitEnd.CLOSED:
                    raise shutting_down()
                if end is WaitEnd.GONE:
                    return None
                if end is WaitEnd.TIMED_OUT:
                    return await on_timeout()
                mark = wakeups.mark()
                outcome = await attempt(False)
                if isinstance(outcome, Answered):
                    place.concluded(pass_on=outcome.pass_on)
                    return outcome.answer
                place.concluded(pass_on=False)
    finally:
        gone.cancel()
