"""What the meters report, and to whom: a `MetricsRecorder` (an exporter) per `Database`.

The meters (`sessionwise.metrics.pools`, `sessionwise.metrics.sessions`) turn SQLAlchemy's
pool events and sessionwise's session lifecycle into these calls; an exporter turns the calls
into its own instruments (`sessionwise.metrics.prometheus`, `sessionwise.metrics.otel`). The
names follow OpenTelemetry's database-client semantic conventions
(https://opentelemetry.io/docs/specs/semconv/database/database-metrics/): a pool is named by
``pool_name``, its connections are ``idle`` or ``used``.

The gauges (connections by state, the maximum, pending requests) are not pushed: an exporter
reads them when it is scraped, through the function `MetricsRecorder.watch_pool` gives it,
so that they cost nothing between scrapes.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["FanOut", "MetricsRecorder", "PoolReading", "SessionOutcome"]


@dataclass(frozen=True, slots=True)
class PoolReading:
    """One pool right now: connections by state, the most it may open, sessions waiting."""

    idle: int
    used: int
    max: int
    pending_requests: int


class SessionOutcome(enum.Enum):
    """How a session's unit of work ended."""

    COMMITTED = "committed"  # a write session whose commit succeeded
    CLOSED = "closed"  # a read session that ended without an error: nothing to commit
    ROLLED_BACK = "rolled_back"  # the block raised (or was cancelled): not a database failure
    FAILED = "failed"  # a database failure, by cause (`sessionwise.errors.Failure`)


class MetricsRecorder:
    """Receives what the meters measure. Every method does nothing here: override what you use.

    Durations are in seconds. Called on the event loop's thread (inside SQLAlchemy's pool
    events and at the end of each session), so each call must be quick and must not block.
    """

    def watch_pool(self, pool_name: str, read: Callable[[], PoolReading]) -> None:
        """A pool started: *read* tells its state whenever the exporter is scraped."""

    def forget_pool(self, pool_name: str) -> None:
        """The pool was disposed (`Database.close`)."""

    def connection_created(self, pool_name: str, seconds: float) -> None:
        """The pool opened a new connection; *seconds* it took (``create_time``)."""

    def connection_waited(self, pool_name: str, seconds: float) -> None:
        """A session got its connection *seconds* after it first asked (``wait_time``)."""

    def connection_used(self, pool_name: str, seconds: float) -> None:
        """A connection came back to the pool after *seconds* checked out (``use_time``)."""

    def connection_timed_out(self, pool_name: str) -> None:
        """A session waited ``pool_timeout`` for a connection and got none (``timeouts``)."""

    def session_committed(self, pool_name: str, seconds: float) -> None:
        """A session's commit took *seconds* (for spans; the commit's statement is not traced)."""

    def session_ended(
        self, pool_name: str, outcome: SessionOutcome, cause: str | None, seconds: float
    ) -> None:
        """A session ended after *seconds*; *cause* is the `Failure` value when it failed."""


class FanOut(MetricsRecorder):
    """Several recorders as one (Prometheus and OpenTelemetry side by side)."""

    def __init__(self, *recorders: MetricsRecorder) -> None:
        self.recorders = recorders

    def watch_pool(self, pool_name: str, read: Callable[[], PoolReading]) -> None:
        for recorder in self.recorders:
            recorder.watch_pool(pool_name, read)

    def forget_pool(self, pool_name: str) -> None:
        for recorder in self.recorders:
            recorder.forget_pool(pool_name)

    def connection_created(self, pool_name: str, seconds: float) -> None:
        for recorder in self.recorders:
            recorder.connection_created(pool_name, seconds)

    def connection_waited(self, pool_name: str, seconds: float) -> None:
        for recorder in self.recorders:
            recorder.connection_waited(pool_name, seconds)

    def connection_used(self, pool_name: str, seconds: float) -> None:
        for recorder in self.recorders:
            recorder.connection_used(pool_name, seconds)

    def connection_timed_out(self, pool_name: str) -> None:
        for recorder in self.recorders:
            recorder.connection_timed_out(pool_name)

    def session_committed(self, pool_name: str, seconds: float) -> None:
        for recorder in self.recorders:
            recorder.session_committed(pool_name, seconds)

    def session_ended(
        self, pool_name: str, outcome: SessionOutcome, cause: str | None, seconds: float
    ) -> None:
        for recorder in self.recorders:
            recorder.session_ended(pool_name, outcome, cause, seconds)
