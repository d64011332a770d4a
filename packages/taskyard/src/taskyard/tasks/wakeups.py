"""Wake-ups for claims that wait: who waits for which project, in what order, until when.

A claim with ``wait_seconds`` that finds nothing takes a `Place` in its project's line and
waits on an in-memory event, holding no database connection. It is woken when something in
the project may have become claimable:

* **an announcement** (`WakeupHub.announce`, called by the service in the transaction that
  creates a task or puts one back to pending). On PostgreSQL that is a ``NOTIFY`` in the
  transaction itself, so it is delivered on commit only, to the one `PostgresListener` of
  every taskyard process (a connection of its own, outside the pool): a task created by
  another process wakes a waiter here. On SQLite (and wherever there is no listener) it is
  an in-process call after the commit.
* **a moment** (`WakeupHub.wake_at`): a claim that finds nothing also learns when the project's
  next task becomes claimable by time alone (a lease that expires, a ``run_after``); the hub
  keeps one timer per project, at the earliest such moment.
* **a re-check**, once a second, while the PostgreSQL listener is down: notifications sent
  meanwhile are lost, so the head of every line looks for itself; when the listener is back,
  every head looks once more.

Fairness: each wake-up goes to the head of the line, so the longest waiter gets the first task.
A woken waiter that finds nothing (a claim that did not wait took the task first) goes back
to the head of the line, not the tail; one that claims and sees more work due passes a
wake-up on to the next (identical notifications of one transaction arrive once; one moment
may make several tasks due), and one that leaves while holding a wake-up (a client that
disconnected) passes it on too.

A wake-up is an event, not a reservation: the woken waiter claims like any other request.
Each line is per process; across processes the first claim to commit wins, as always.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from asyncio import FIRST_COMPLETED
from collections import deque
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from sqlalchemy import event

from sessionwise import Database, Session
from sessionwise.notifications import PostgresListener, notify
from taskyard.timestamps import utc_now

__all__ = ["CHANNEL", "Place", "WaitEnd", "WakeupHub", "wakeups_of"]

logger = logging.getLogger("taskyard")

CHANNEL = "taskyard_claimable"
"""The NOTIFY channel; the payload is the project's id."""

RECHECK_INTERVAL = 1.0
"""Seconds between re-checks while the listener is down (the issue's bound on a wake-up)."""

# A timer fires this long after the moment it was set for: a lease is expired only once
# `lease_expires_at < now` (strictly).
_TIMER_SLACK = 0.01
_PENDING_KEY = "taskyard.wakeups.pending"


class WaitEnd(enum.Enum):
    """How `Place.wait` ended."""

    WOKEN = "woken"
    TIMED_OUT = "timed_out"
    CLOSED = "closed"  # the server is shutting down
    GONE = "gone"  # the client disconnected


class Place:
    """One waiting claim's place in its project's line (see `WakeupHub.line`)."""

    __slots__ = ("_event", "_hub", "holding", "in_line", "project_id", "woken_before")

    def __init__(self, hub: WakeupHub, project_id: int) -> None:
        self._hub = hub
        self.project_id = project_id
        self._event = asyncio.Event()
        self.in_line = False
        # Woken by a wake-up that nobody else got, and not done with it yet.
        self.holding = False
        self.woken_before = False  # then it waits again at the head of the line

    async def wait(self, deadline: float, since: int, gone: asyncio.Future[object]) -> WaitEnd:
        """Wait in line until woken, the loop time *deadline*, *gone* (the client
        disconnected) or shutdown.

        *since* is the `WakeupHub.mark` taken before the claim that found nothing: a wake-up
        for the project after it (one that arrived while this waiter was out of line,
        claiming) ends the wait at once. A waiter that was woken before goes back to the head
        of the line.
        """
        hub = self._hub
        if hub.closed:
            return WaitEnd.CLOSED
        if hub.woken_since(self.project_id, since):
            self.holding = True  # that wake-up may have found nobody in line
            return WaitEnd.WOKEN
        self._event.clear()
        hub.enter(self)
        woken = asyncio.ensure_future(self._event.wait())
        try:
            timeout = max(0.0, deadline - asyncio.get_running_loop().time())
            await asyncio.wait((woken, gone), timeout=timeout, return_when=FIRST_COMPLETED)
        finally:
            woken.cancel()
        if hub.closed:
            return WaitEnd.CLOSED
        if gone.done():
            hub.leave(self)  # a wake-up it holds is passed on as it leaves the line
            return WaitEnd.GONE
        if self._event.is_set():
            return WaitEnd.WOKEN
        hub.leave(self)
        return WaitEnd.TIMED_OUT

    def concluded(self, *, pass_on: bool) -> None:
        """The claim after a wake-up is over; *pass_on*: it took work and more is due, so
        wake the next."""
        self.holding = False
        if pass_on:
            self._hub.wake(self.project_id)

    def wake(self) -> None:
        self.in_line = False
        self.holding = self.woken_before = True
        self._event.set()


class WakeupHub:
    """The lines of waiting claims of one process, per project, and what wakes them.

    Built and run by the app's lifespan (`running`); `announce` is for the service.
    """

    def __init__(self) -> None:
        self._lines: dict[int, deque[Place]] = {}
        self._timers: dict[int, tuple[datetime, asyncio.TimerHandle]] = {}
        # A counter of wake-ups, and per project the count at its last one (see `mark`).
        self._count = 0
        self._last_wakeup: dict[int, int] = {}
        self._listener: PostgresListener | None = None
        self._rechecks: asyncio.Task[None] | None = None
        self.closed = False

    def __len__(self) -> int:
        """Claims waiting in line right now, over all projects."""
        return sum(len(line) for line in self._lines.values())

    def waiting(self, project_id: int) -> int:
        return len(self._lines.get(project_id, ()))

    @property
    def listening(self) -> bool:
        """True when cross-process wake-ups arrive (PostgreSQL, listener connected)."""
        return self._listener is not None and self._listener.connected

    # -- what wakes a waiter ------------------------------------------------------------

    def wake(self, project_id: int) -> None:
        """Something in the project may be claimable: wake the head of its line."""
        self._count += 1
        self._last_wakeup[project_id] = self._count
        line = self._lines.get(project_id)
        if line:
            line.popleft().wake()

    def mark(self) -> int:
        """A point in the sequence of wake-ups; take it before a claim (see `Place.wait`)."""
        return self._count

    def woken_since(self, project_id: int, mark: int) -> bool:
        return self._last_wakeup.get(project_id, 0) > mark

    def wake_at(self, project_id: int, moment: datetime) -> None:
        """Wake the head of the project's line at *moment* (keeps the earliest one asked)."""
        current = self._timers.get(project_id)
        if current is not None:
            if current[0] <= moment:
                return
            current[1].cancel()
        delay = max(0.0, (moment - utc_now()).total_seconds()) + _TIMER_SLACK
        handle = asyncio.get_running_loop().call_later(delay, self._moment_reached, project_id)
        self._timers[project_id] = (moment, handle)

    def _moment_reached(self, project_id: int) -> None:
        del self._timers[project_id]
        self.wake(project_id)

    def _wake_every_head(self) -> None:
        for project_id in list(self._lines):
            self.wake(project_id)

    # -- the lines -------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def line(self, project_id: int) -> AsyncIterator[Place]:
        """A place for one waiting claim; leaving the block leaves the line (also when the
        client disconnected), passing on a wake-up it was holding."""
        place = Place(self, project_id)
        try:
            yield place
        finally:
            self.leave(place)
            if place.holding and not self.closed:
                place.holding = False
                self.wake(project_id)

    def enter(self, place: Place) -> None:
        """Join the line: at its head if *place* was woken before, else at its tail."""
        if place.in_line:
            return
        line = self._lines.setdefault(place.project_id, deque())
        if place.woken_before:
            line.appendleft(place)
        else:
            line.append(place)
        place.in_line = True

    def leave(self, place: Place) -> None:
        line = self._lines.get(place.project_id)
        if place.in_line and line is not None:
            line.remove(place)
            place.in_line = False
        if line is not None and not line:
            del self._lines[place.project_id]
            timer = self._timers.pop(place.project_id, None)
            if timer is not None:
                timer[1].cancel()

    # -- announcements -------------------------------------------------------------------

    async def announce(self, session: Session, project_id: int) -> None:
        """Tell waiters, once *session* commits, that *project_id* may have claimable work."""
        if self._listener is not None:
            # In the transaction: delivered on commit, to every process; never on rollback.
            await notify(await session.connection(), CHANNEL, str(project_id))
            return
        pending: set[int] | None = session.info.get(_PENDING_KEY)
        if pending is None:
            pending = session.info[_PENDING_KEY] = set()
            event.listen(session.sync_session, "after_commit", self._after_commit, once=True)
        pending.add(project_id)

    def _after_commit(self, session: Any) -> None:
        for project_id in session.info.pop(_PENDING_KEY, ()):
            self.wake(project_id)

    def _notified(self, payload: str) -> None:
        try:
            project_id = int(payload)
        except ValueError:
            logger.warning("ignored a %s notification that is not a project id", CHANNEL)
            return
        self.wake(project_id)

    def _listener_state(self, connected: bool) -> None:
        if connected:
            if self._rechecks is not None:
                self._rechecks.cancel()
                self._rechecks = None
            self._wake_every_head()  # what was announced while it was down
        elif self._rechecks is None and not self.closed:
            self._rechecks = asyncio.create_task(self._recheck_while_deaf())

    async def _recheck_while_deaf(self) -> None:
        while True:
            await asyncio.sleep(RECHECK_INTERVAL)
            self._wake_every_head()

    # -- lifecycle -----------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def running(self, db: Database) -> AsyncIterator[WakeupHub]:
        """Listen while the block runs (PostgreSQL); on exit wake every waiter to answer."""
        config = db.config
        if db.engine.dialect.name == "postgresql":
            if config.pgbouncer:
                # LISTEN through PgBouncer's transaction mode would listen on a server
                # connection that other clients get next; re-check instead.
                logger.warning("behind PgBouncer: waiting claims re-check once a second")
                self._listener_state(False)
            else:
                self._listener = PostgresListener(
                    db.engine.url,
                    CHANNEL,
                    self._notified,
                    on_state=self._listener_state,
                    application_name=f"{config.application_name or 'taskyard'}-listener",
                )
                self._listener_state(False)  # until it listens
                await self._listener.start()
        try:
            yield self
        finally:
            await self.close()

    def drain(self) -> None:
        """Wake every waiter to answer at once (503), and every later claim that would wait.

        For the start of a shutdown: the server waits for requests in flight before it runs
        the lifespan's exit (uvicorn's graceful shutdown), so that must not wait for them.
        """
        self.closed = True
        for line in self._lines.values():
            for place in line:
                place.wake()
        self._lines.clear()
        for _moment, handle in self._timers.values():
            handle.cancel()
        self._timers.clear()

    async def close(self) -> None:
        """`drain`, and stop listening. Idempotent."""
        self.drain()
        if self._rechecks is not None:
            self._rechecks.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._rechecks
            self._rechecks = None
        if self._listener is not None:
            await self._listener.close()


def wakeups_of(state: Any) -> WakeupHub | None:
    """The hub on an app's *state* (``app.state.wakeups``, set by the lifespan), if any."""
    hub = getattr(state, "wakeups", None)
    return hub if isinstance(hub, WakeupHub) else None
