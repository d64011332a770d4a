"""Steady-rate HTTP load that records every request's outcome and timing."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx


@dataclass
class Outcome:
    """One request: when it started and ended (monotonic seconds) and what came back."""

    started: float
    ended: float = 0.0
    status: int | None = None  # None: no HTTP answer at all (see `error`)
    body: Any = None
    headers: httpx.Headers = field(default_factory=httpx.Headers)
    error: str | None = None
    sent: dict[str, Any] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return self.ended - self.started

    def describe(self) -> str:
        answer = self.error if self.status is None else f"{self.status} {self.body!r}"[:400]
        return f"t={self.started:.2f}s +{self.seconds:.2f}s sent={self.sent} -> {answer}"


async def record(
    send: Callable[[], Awaitable[httpx.Response]], sent: dict[str, Any], clock_zero: float
) -> Outcome:
    """Await *send* and turn the response (or the transport error) into an `Outcome`."""
    outcome = Outcome(started=time.monotonic() - clock_zero, sent=sent)
    try:
        response = await send()
    except httpx.HTTPError as error:
        outcome.error = f"{type(error).__name__}: {error}"
    else:
        outcome.status = response.status_code
        outcome.headers = response.headers
        try:
            outcome.body = response.json()
        except ValueError:
            outcome.body = response.text
    outcome.ended = time.monotonic() - clock_zero
    return outcome


async def steady_load(
    make_request: Callable[[int], tuple[Callable[[], Awaitable[httpx.Response]], dict[str, Any]]],
    rate: float,
    keep_going: Callable[[], bool],
    clock_zero: float,
) -> list[Outcome]:
    """Start ``make_request(i)`` *rate* times a second while *keep_going()* holds.

    Each request runs in its own task, so one slow answer never delays the next request:
    the rate is what the client offers, whatever the server does.
    """
    outcomes: list[Outcome] = []

    async def one(index: int) -> None:
        send, sent = make_request(index)
        outcomes.append(await record(send, sent, clock_zero))

    async with anyio.create_task_group() as group:
        index = 0
        next_at = time.monotonic()
        while keep_going():
            group.start_soon(one, index)
            index += 1
            next_at += 1 / rate
            await anyio.sleep(max(0.0, next_at - time.monotonic()))
    outcomes.sort(key=lambda outcome: outcome.started)
    return outcomes
