"""The wake-up hub's lines on their own: order, hand-overs, timers, shutdown (no database)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from taskyard.tasks.wakeups import Place, WaitEnd, WakeupHub
from taskyard.timestamps import utc_now
from tests.support.waiting import wait_until

pytestmark = pytest.mark.anyio
PROJECT = 7


def _deadline(seconds: float = 10.0) -> float:
    return asyncio.get_running_loop().time() + seconds


class Waiter:
    """A place in line and the task that waits on it, as the claim route uses them."""

    def __init__(self, hub: WakeupHub, name: str) -> None:
        self.hub, self.name = hub, name
        self.gone: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._line = hub.line(PROJECT)
        self.place: Place | None = None
        self.task: asyncio.Task[WaitEnd] | None = None

    async def __aenter__(self) -> Waiter:
        self.place = await self._line.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._line.__aexit__(None, None, None)

    def wait(self, mark: int = 0, seconds: float = 10.0) -> asyncio.Task[WaitEnd]:
        assert self.place is not None
        self.task = asyncio.ensure_future(self.place.wait(_deadline(seconds), mark, self.gone))
        return self.task


async def _in_line(hub: WakeupHub, count: int) -> None:
    await wait_until(lambda: hub.waiting(PROJECT) == count)


async def test_each_wake_up_goes_to_the_longest_waiter() -> None:
    hub = WakeupHub()
    async with Waiter(hub, "a") as a, Waiter(hub, "b") as b, Waiter(hub, "c") as c:
        for n, waiter in enumerate((a, b, c), start=1):
            waiter.wait()
            await _in_line(hub, n)
        woken = []
        for _ in range(3):
            hub.wake(PROJECT)
            done, _ = await asyncio.wait(
                [w.task for w in (a, b, c) if w.task and w.name not in woken],
                return_when=asyncio.FIRST_COMPLETED,
            )
            (task,) = done
            assert task.result() is WaitEnd.WOKEN
            woken.append(next(w.name for w in (a, b, c) if w.task is task))
        assert woken == ["a", "b", "c"]


async def test_a_woken_waiter_that_found_nothing_waits_again_at_the_head() -> None:
    hub = WakeupHub()
    async with Waiter(hub, "a") as a, Waiter(hub, "b") as b:
        a.wait()
        await _in_line(hub, 1)
        b.wait()
        await _in_line(hub, 2)
        hub.wake(PROJECT)
        assert await a.task is WaitEnd.WOKEN  # type: ignore[misc]
        assert a.place is not None
        mark = hub.mark()
        a.place.concluded(pass_on=False)  # another claim took the task first
        a.wait(mark)
        await _in_line(hub, 2)
        hub.wake(PROJECT)
        assert await a.task is WaitEnd.WOKEN  # type: ignore[misc]
        assert b.task is not None
        assert not b.task.done()
        b.gone.set_result(None)
        assert await b.task is WaitEnd.GONE


async def test_a_claim_that_took_work_wakes_the_next_waiter() -> None:
    hub = WakeupHub()
    async with Waiter(hub, "a") as a, Waiter(hub, "b") as b:
        a.wait()
        await _in_line(hub, 1)
        b.wait()
        await _in_line(hub, 2)
        hub.wake(PROJECT)
        assert await a.task is WaitEnd.WOKEN  # type: ignore[misc]
        assert a.place is not None
        a.place.concluded(pass_on=True)  # took work, more is due: the next one looks
        assert await b.task is WaitEnd.WOKEN  # type: ignore[misc]


async def test_a_waiter_leaving_with_a_wake_up_passes_it_on() -> None:
    hub = WakeupHub()
    async with Waiter(hub, "b") as b:
        async with Waiter(hub, "a") as a:
            a.wait()
            await _in_line(hub, 1)
            b.wait()
            await _in_line(hub, 2)
            hub.wake(PROJECT)
            assert await a.task is WaitEnd.WOKEN  # type: ignore[misc]
            # ... and its client disconnects before it claims
        assert await b.task is WaitEnd.WOKEN  # type: ignore[misc]
    assert len(hub) == 0


async def test_a_wake_up_while_out_of_line_is_not_lost() -> None:
    hub = WakeupHub()
    async with Waiter(hub, "a") as a:
        mark = hub.mark()  # taken before the claim that found nothing
        hub.wake(PROJECT)  # a task committed meanwhile, nobody in line yet
        assert await a.wait(mark) is WaitEnd.WOKEN
        assert hub.waiting(PROJECT) == 0


async def test_the_deadline_ends_the_wait_and_leaves_the_line() -> None:
    hub = WakeupHub()
    async with Waiter(hub, "a") as a:
        assert await a.wait(seconds=0.05) is WaitEnd.TIMED_OUT
        assert len(hub) == 0


async def test_a_moment_wakes_the_head_and_the_earliest_moment_wins() -> None:
    hub = WakeupHub()
    async with Waiter(hub, "a") as a:
        a.wait()
        await _in_line(hub, 1)
        hub.wake_at(PROJECT, utc_now() + timedelta(hours=1))
        hub.wake_at(PROJECT, utc_now() + timedelta(milliseconds=50))
        hub.wake_at(PROJECT, utc_now() + timedelta(minutes=1))  # later: ignored
        assert await a.task is WaitEnd.WOKEN  # type: ignore[misc]


async def test_drain_answers_every_waiter_and_every_later_one() -> None:
    hub = WakeupHub()
    async with Waiter(hub, "a") as a, Waiter(hub, "b") as b:
        a.wait(seconds=30)
        b.wait(seconds=30)
        await _in_line(hub, 2)
        hub.drain()
        assert await a.task is WaitEnd.CLOSED  # type: ignore[misc]
        assert await b.task is WaitEnd.CLOSED  # type: ignore[misc]
        async with Waiter(hub, "late") as late:
            assert await late.wait(seconds=30) is WaitEnd.CLOSED
    assert len(hub) == 0


async def test_while_the_listener_is_down_the_head_of_each_line_rechecks() -> None:
    hub = WakeupHub()
    async with Waiter(hub, "a") as a, Waiter(hub, "b") as b:
        a.wait()
        await _in_line(hub, 1)
        b.wait()
        await _in_line(hub, 2)
        hub._listener_state(False)  # what the listener reports when its connection drops
        try:
            assert await a.task is WaitEnd.WOKEN  # type: ignore[misc]  # within a second
            assert b.task is not None
            assert not b.task.done()  # only the head looks
            hub._listener_state(True)  # back: no more re-checks, every head looks once
            assert await b.task is WaitEnd.WOKEN  # type: ignore[misc]
        finally:
            await hub.close()
