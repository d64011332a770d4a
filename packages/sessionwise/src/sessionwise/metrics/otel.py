"""OpenTelemetry exporters for sessionwise's metrics and spans (extra ``sessionwise[otel]``).

`OpenTelemetryMetrics` records OpenTelemetry's database-client metrics
(https://opentelemetry.io/docs/specs/semconv/database/database-metrics/) through the metrics
API: ``db.client.connection.count`` (attribute ``db.client.connection.state``: idle, used),
``.max`` and ``.pending_requests`` as asynchronous up-down counters read at collection,
``.timeouts`` as a counter, ``.create_time``, ``.wait_time`` and ``.use_time`` as histograms
in seconds; every one with ``db.client.connection.pool.name``. And
``sessionwise.session.duration`` with the outcome and its cause.

`OpenTelemetrySpans` adds the two parts of a session that SQLAlchemy's instrumentation does
not see as spans of their own: the wait for a connection (``sessionwise.connection.wait``,
sessionwise's turn and the pool's checkout; SQLAlchemy's instrumentation starts timing at
``Engine.connect``, after the turn) and the commit (``sessionwise.commit``: the driver's
commit is no cursor execute, so the statement spans miss it). Both are recorded when they end,
with their real start time, as children of the span current at that moment (the request's).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
from opentelemetry.trace import TracerProvider

from sessionwise.metrics.recorder import MetricsRecorder, PoolReading, SessionOutcome

__all__ = ["OpenTelemetryMetrics", "OpenTelemetrySpans"]

POOL_NAME = "db.client.connection.pool.name"
STATE = "db.client.connection.state"


class OpenTelemetryMetrics(MetricsRecorder):
    """sessionwise's metrics through the OpenTelemetry metrics API.

    Args:
        meter_provider: The SDK's ``MeterProvider``; the global one by default.
    """

    def __init__(self, meter_provider: MeterProvider | None = None) -> None:
        meter = metrics.get_meter("sessionwise", meter_provider=meter_provider)
        self._pools: dict[str, Callable[[], PoolReading]] = {}
        meter.create_observable_up_down_counter(
            "db.client.connection.count",
            callbacks=[self._observe_count],
            unit="{connection}",
            description="Connections of the pool by state.",
        )
        meter.create_observable_up_down_counter(
            "db.client.connection.max",
            callbacks=[self._observe(lambda reading: reading.max)],
            unit="{connection}",
            description="The most connections the pool may open.",
        )
        meter.create_observable_up_down_counter(
            "db.client.connection.pending_requests",
            callbacks=[self._observe(lambda reading: reading.pending_requests)],
            unit="{request}",
            description="Sessions waiting for a connection right now.",
        )
        self._timeouts = meter.create_counter(
            "db.client.connection.timeouts",
            unit="{timeout}",
            description="Sessions that got no connection within pool_timeout.",
        )
        self._create_time = meter.create_histogram(
            "db.client.connection.create_time", unit="s", description="Time to open a connection."
        )
        self._wait_time = meter.create_histogram(
            "db.client.connection.wait_time",
            unit="s",
            description="Time a session waited for its connection.",
        )
        self._use_time = meter.create_histogram(
            "db.client.connection.use_time",
            unit="s",
            description="Time a connection was checked out.",
        )
        self._sessions = meter.create_histogram(
            "sessionwise.session.duration", unit="s", description="How long sessions lasted."
        )

    def _observe_count(self, _options: CallbackOptions) -> Iterable[Observation]:
        for pool_name, read in list(self._pools.items()):
            reading = read()
            yield Observation(reading.idle, {STATE: "idle", POOL_NAME: pool_name})
            yield Observation(reading.used, {STATE: "used", POOL_NAME: pool_name})

    def _observe(
        self, value: Callable[[PoolReading], int]
    ) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(_options: CallbackOptions) -> Iterable[Observation]:
            for pool_name, read in list(self._pools.items()):
                yield Observation(value(read()), {POOL_NAME: pool_name})

        return observe

    def watch_pool(self, pool_name: str, read: Callable[[], PoolReading]) -> None:
        self._pools[pool_name] = read

    def forget_pool(self, pool_name: str) -> None:
        self._pools.pop(pool_name, None)

    def connection_created(self, pool_name: str, seconds: float) -> None:
        self._create_time.record(seconds, {POOL_NAME: pool_name})

    def connection_waited(self, pool_name: str, seconds: float) -> None:
        self._wait_time.record(seconds, {POOL_NAME: pool_name})

    def connection_used(self, pool_name: str, seconds: float) -> None:
        self._use_time.record(seconds, {POOL_NAME: pool_name})

    def connection_timed_out(self, pool_name: str) -> None:
        self._timeouts.add(1, {POOL_NAME: pool_name})

    def session_ended(
        self, pool_name: str, outcome: SessionOutcome, cause: str | None, seconds: float
    ) -> None:
        attributes = {POOL_NAME: pool_name, "sessionwise.session.outcome": outcome.value}
        if cause is not None:
            attributes["error.type"] = cause
        self._sessions.record(seconds, attributes)


class OpenTelemetrySpans(MetricsRecorder):
    """The connection wait and the commit of each session, as spans.

    Args:
        tracer_provider: The SDK's ``TracerProvider``; the global one by default.
    """

    def __init__(self, tracer_provider: TracerProvider | None = None) -> None:
        self._tracer = trace.get_tracer("sessionwise", tracer_provider=tracer_provider)

    def _span(self, name: str, pool_name: str, seconds: float) -> None:
        end = time.time_ns()
        span = self._tracer.start_span(
            name,
            kind=trace.SpanKind.INTERNAL,
            start_time=end - int(seconds * 1e9),
            attributes={POOL_NAME: pool_name},
        )
        span.end(end_time=end)

    def connection_waited(self, pool_name: str, seconds: float) -> None:
        self._span("sessionwise.connection.wait", pool_name, seconds)

    def session_committed(self, pool_name: str, seconds: float) -> None:
        self._span("sessionwise.commit", pool_name, seconds)
