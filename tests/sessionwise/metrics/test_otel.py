"""The same metrics through the OpenTelemetry metrics API, and sessionwise's own spans."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import text

from sessionwise import Database
from sessionwise.metrics import FanOut
from sessionwise.metrics.otel import OpenTelemetryMetrics, OpenTelemetrySpans


def _points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    data = reader.get_metrics_data()
    assert data is not None
    found: dict[str, list[Any]] = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                found.setdefault(metric.name, []).extend(metric.data.data_points)
    return found


async def test_otel_metrics_follow_real_sessions(database_url: str) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    try:
        async with Database(database_url, metrics=OpenTelemetryMetrics(provider)) as db:
            for _ in range(3):
                async with db.session() as session:
                    await session.execute(text("SELECT 1"))
            points = _points(reader)
    finally:
        provider.shutdown()

    pool = {"db.client.connection.pool.name": "primary"}
    [wait] = points["db.client.connection.wait_time"]
    assert wait.count == 3
    assert dict(wait.attributes) == pool
    counts = {
        point.attributes["db.client.connection.state"]: point.value
        for point in points["db.client.connection.count"]
    }
    assert counts["used"] == 0
    assert counts["idle"] >= 1
    [maximum] = points["db.client.connection.max"]
    assert maximum.value == 15
    [sessions] = points["sessionwise.session.duration"]
    assert sessions.count == 3
    assert sessions.attributes["sessionwise.session.outcome"] == "committed"
    assert {"db.client.connection.create_time", "db.client.connection.use_time"} <= set(points)


async def test_wait_and_commit_spans_have_their_real_duration(sqlite_url: str) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    async with Database(sqlite_url, metrics=FanOut(OpenTelemetrySpans(provider))) as db:
        with tracer.start_as_current_span("work"):
            async with db.session() as session:
                await session.execute(text("SELECT 1"))
    spans = {span.name: span for span in exporter.get_finished_spans()}
    work = spans["work"]
    for name in ("sessionwise.connection.wait", "sessionwise.commit"):
        span = spans[name]
        assert span.parent is not None
        assert span.parent.span_id == work.context.span_id
        assert span.start_time is not None
        assert span.end_time is not None
        assert work.start_time is not None
        assert span.start_time >= work.start_time
        assert span.end_time >= span.start_time
    provider.shutdown()
