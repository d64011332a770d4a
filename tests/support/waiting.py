"""Waiting for state that no event announces: pool counters, rows in pg_stat_activity."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable

import anyio


async def wait_until(
    condition: Callable[[], bool | Awaitable[bool]], *, within: float = 5.0
) -> None:
    """Poll *condition* until it holds; `TimeoutError` if it still does not after *within* s."""
    deadline = anyio.current_time() + within
    while True:
        outcome = condition()
        if inspect.isawaitable(outcome):
            outcome = await outcome
        if outcome:
            return
        if anyio.current_time() > deadline:
            raise TimeoutError(f"condition still false after {within}s")
        await anyio.sleep(0.01)
