"""Prometheus exporter for sessionwise's metrics (extra ``sessionwise[prometheus]``).

The names are OpenTelemetry's database-client metrics converted by OpenTelemetry's
Prometheus rules (dots to underscores, the unit as a suffix, ``_total`` on counters) and fixed
here, so that dashboards can rely on them:

======================================================  =========  ==========================
name                                                     type       labels
======================================================  =========  ==========================
``db_client_connection_count``                           gauge      ``state`` (idle, used),
                                                                    ``pool_name``
``db_client_connection_max``                             gauge      ``pool_name``
``db_client_connection_pending_requests``                gauge      ``pool_name``
``db_client_connection_timeouts_total``                  counter    ``pool_name``
``db_client_connection_create_time_seconds``             histogram  ``pool_name``
``db_client_connection_wait_time_seconds``               histogram  ``pool_name``
``db_client_connection_use_time_seconds``                histogram  ``pool_name``
``sessionwise_session_duration_seconds``                 histogram  ``pool_name``, ``outcome``,
                                                                    ``cause``
======================================================  =========  ==========================

The gauges are read from the pools when the registry is collected (a scrape), nothing is
counted for them in between. ``cause`` is ``none`` unless ``outcome`` is ``failed``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sessionwise.metrics.recorder import MetricsRecorder, PoolReading, SessionOutcome

__all__ = ["CONNECTION_BUCKETS", "SESSION_BUCKETS", "PrometheusMetrics"]

# Seconds. Waits and creates are short when healthy and pile up at pool_timeout (5 s by
# default) when not; the buckets resolve both ends.
CONNECTION_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
SESSION_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)


class _PoolGauges(Collector):
    """Connections by state, the maximum and pending requests, read at collection time."""

    def __init__(self) -> None:
        self.pools: dict[str, Callable[[], PoolReading]] = {}

    def describe(self) -> list[Metric]:
        # Described without samples, so that registering reads no pool (none may exist yet).
        return list(self._families())

    def collect(self) -> Iterator[Metric]:
        count, maximum, pending = self._families()
        for pool_name, read in list(self.pools.items()):
            reading = read()
            count.add_metric(["idle", pool_name], reading.idle)
            count.add_metric(["used", pool_name], reading.used)
            maximum.add_metric([pool_name], reading.max)
            pending.add_metric([pool_name], reading.pending_requests)
        yield from (count, maximum, pending)

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily(
                "db_client_connection_count",
                "Connections of the pool by state: idle in the pool, or used (checked out).",
                labels=["state", "pool_name"],
            ),
            GaugeMetricFamily(
                "db_client_connection_max",
                "The most connections the pool may open (pool_size + max_overflow).",
                labels=["pool_name"],
            ),
            GaugeMetricFamily(
                "db_client_connection_pending_requests",
                "Sessions waiting for a connection of the pool right now.",
                labels=["pool_name"],
            ),
        )


class PrometheusMetrics(MetricsRecorder):
    """sessionwise's metrics as Prometheus instruments in *registry*.

    Args:
        registry: Where to register; ``prometheus_client.REGISTRY`` by default. Give each
            app its own when one process runs several (tests), or the names collide.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        from prometheus_client import REGISTRY

        self.registry = registry if registry is not None else REGISTRY
        self._gauges = _PoolGauges()
        self.registry.register(self._gauges)
        self.timeouts = Counter(
            "db_client_connection_timeouts",
            "Sessions that got no connection within pool_timeout.",
            ["pool_name"],
            registry=self.registry,
        )
        self.create_time = self._histogram(
            "db_client_connection_create_time_seconds", "Time to open a new connection."
        )
        self.wait_time = self._histogram(
            "db_client_connection_wait_time_seconds",
            "Time a session waited for its connection, from its first statement's call.",
        )
        self.use_time = self._histogram(
            "db_client_connection_use_time_seconds",
            "Time a connection was checked out before it came back to the pool.",
        )
        self.sessions = Histogram(
            "sessionwise_session_duration_seconds",
            "How long sessions lasted, by how they ended.",
            ["pool_name", "outcome", "cause"],
            buckets=SESSION_BUCKETS,
            registry=self.registry,
        )

        # (histogram, label values) -> its child: labels() takes a lock and checks the values
        # on every call, and these are observed several times per request.
        self._children: dict[tuple[Histogram, tuple[str, ...]], Histogram] = {}

    def _observe(self, histogram: Histogram, labels: tuple[str, ...], seconds: float) -> None:
        child = self._children.get((histogram, labels))
        if child is None:
            child = self._children[(histogram, labels)] = histogram.labels(*labels)
        child.observe(seconds)

    def _histogram(self, name: str, documentation: str) -> Histogram:
        return Histogram(
            name, documentation, ["pool_name"], buckets=CONNECTION_BUCKETS, registry=self.registry
        )

    def watch_pool(self, pool_name: str, read: Callable[[], PoolReading]) -> None:
        self._gauges.pools[pool_name] = read
        self.timeouts.labels(pool_name)  # shown as 0 from the start, so rate() has a base

    def forget_pool(self, pool_name: str) -> None:
        self._gauges.pools.pop(pool_name, None)

    def connection_created(self, pool_name: str, seconds: float) -> None:
        self._observe(self.create_time, (pool_name,), seconds)

    def connection_waited(self, pool_name: str, seconds: float) -> None:
        self._observe(self.wait_time, (pool_name,), seconds)

    def connection_used(self, pool_name: str, seconds: float) -> None:
        self._observe(self.use_time, (pool_name,), seconds)

    def connection_timed_out(self, pool_name: str) -> None:
        self.timeouts.labels(pool_name).inc()

    def session_ended(
        self, pool_name: str, outcome: SessionOutcome, cause: str | None, seconds: float
    ) -> None:
        self._observe(self.sessions, (pool_name, outcome.value, cause or "none"), seconds)
