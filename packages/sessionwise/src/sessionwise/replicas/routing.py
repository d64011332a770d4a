"""Which server one read session runs on: chosen once, at its first statement.

Per unit of work, never per statement: SQLAlchemy's "Custom Vertical Partitioning" recipe
routes each statement by its kind, which splits one transaction over servers that disagree
(a row read on a replica, then updated on the primary from what the replica said). A read
session here runs entirely on one server. It is chosen when the session first needs a
connection rather than when it is made, so that the request's freshness requirement, often
known only after authentication, is in place by then (`read_at_least`).

The choice: a healthy replica within ``replica_max_lag`` whose replayed position is at least
the required one, taking turns among them; if one cannot be connected to, it is marked down
and the next is tried; with none left, the primary. So a replica that stops costs the reads
sent after it stopped nothing but the failed connect.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

from sqlalchemy import exc
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from sessionwise.exceptions import SessionwiseError
from sessionwise.guards import POOL_TURN_KEY, ROUTE_KEY
from sessionwise.pool_turns import PoolTurns
from sessionwise.replicas.positions import WalPosition

if TYPE_CHECKING:
    from sessionwise.replicas.monitor import Replica

__all__ = ["ReadRoute", "RouteTable", "is_routed", "read_at_least", "routed_server"]

# Connecting failed: refused or reset (sessionwise.postgres reports those as DBAPI errors),
# the server is starting or stopping (a DBAPI error too), or its pool had no turn in time.
_CONNECT_FAILURES = (exc.DBAPIError, exc.TimeoutError, OSError)


class RouteTable:
    """The replicas a route may choose from, with their pools' turns, and the fallback."""

    def __init__(
        self,
        replicas: list[Replica],
        turns: dict[int, PoolTurns],
        primary_read_engine: AsyncEngine,
    ) -> None:
        self.replicas = replicas
        self.turns = turns  # id(replica.engine) -> its PoolTurns
        self.primary_read_engine = primary_read_engine
        self._next = itertools.count()

    def candidates(self, fresh_as: WalPosition | None) -> list[Replica]:
        """Healthy replicas at least *fresh_as*, rotated so that they take turns."""
        ready = [
            replica
            for replica in self.replicas
            if replica.healthy and (fresh_as is None or (replica.replayed or -1) >= fresh_as.lsn)
        ]
        if len(ready) > 1:
            start = next(self._next) % len(ready)
            ready = ready[start:] + ready[:start]
        return ready


class ReadRoute:
    """The pending choice of server of one read session (``session.info[ROUTE_KEY]``)."""

    __slots__ = ("_table", "fresh_as", "replica", "settled")

    def __init__(self, table: RouteTable, fresh_as: WalPosition | None) -> None:
        self._table = table
        self.fresh_as = fresh_as
        self.settled = False
        self.replica: Replica | None = None  # None once settled: the primary

    def require(self, position: WalPosition) -> None:
        if self.settled:
            raise SessionwiseError(
                "read_at_least() was called after the read session ran its first statement: "
                "its server is chosen then, once for the whole unit of work. Call it first."
            )
        if self.fresh_as is None or position > self.fresh_as:
            self.fresh_as = position

    async def settle(self, session: AsyncSession) -> None:
        """Bind *session* to the server chosen now, with a connection already checked out.

        Called by the session guards (`sessionwise.guards`) before the first IO call, in the
        task that owns the session; the calls made here re-enter the guard freely.
        """
        self.settled = True
        primary_turn = session.info.get(POOL_TURN_KEY)
        for replica in self._table.candidates(self.fresh_as):
            turn = self._table.turns[id(replica.engine)].turn()
            session.info[POOL_TURN_KEY] = turn
            session.bind = replica.engine
            try:
                await turn.take()
                await session.connection()
            except _CONNECT_FAILURES as error:
                turn.give_back()
                replica.mark_down(f"a read could not connect ({type(error).__name__})")
                await session.rollback()  # the failed attempt left an empty transaction
                continue
            self.replica = replica
            return
        session.info[POOL_TURN_KEY] = primary_turn
        session.bind = self._table.primary_read_engine


def _route_of(session: AsyncSession) -> ReadRoute | None:
    route = session.info.get(ROUTE_KEY)
    return route if isinstance(route, ReadRoute) else None


def is_routed(session: AsyncSession) -> bool:
    """Whether *session* is a read session that a replica may serve (replicas configured)."""
    return _route_of(session) is not None


def read_at_least(session: AsyncSession, position: WalPosition | None) -> None:
    """Make *session* run where *position* has been replayed: a fresh replica, or the primary.

    For a read session (`Database.read_session`) that has not run a statement yet; a no-op
    for *position* None and for sessions no replica may serve (a write session, a Database
    without replicas).

    Raises:
        SessionwiseError: *session* already ran a statement (its server is chosen).
    """
    route = _route_of(session)
    if route is not None and position is not None:
        route.require(position)


def routed_server(session: AsyncSession) -> str:
    """``"primary"``, or the URL (password hidden) of the replica *session* ran on.

    ``"unrouted"`` for a session no replica may serve; ``"pending"`` before its first
    statement. For logs and tests.
    """
    route = _route_of(session)
    if route is None:
        return "unrouted"
    if not route.settled:
        return "pending"
    return "primary" if route.replica is None else route.replica.shown_url
