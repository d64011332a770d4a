"""OpenTelemetry spans per request: the request, its session's connection wait, statements, commit.

Off by default, and then nothing is installed (no middleware, no listener). With
``TASKYARD_OTLP_ENDPOINT`` set, or a ``tracer_provider`` given to `create_app` (tests), a
request's trace is:

* the server span of OpenTelemetry's FastAPI instrumentation, named by route template
  (``POST /api/v1/tasks``); ``/metrics`` and the health probes are not traced;
* ``sessionwise.connection.wait``: the session's wait for its connection (sessionwise's
  turn, the pool's checkout), and ``sessionwise.commit`` (`sessionwise.metrics.otel`);
* one span per statement from OpenTelemetry's SQLAlchemy instrumentation, attached to each
  of the Database's engines (the SQL text with its placeholders, never the parameters).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from opentelemetry import metrics, trace
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from sessionwise import Database
from taskyard.settings import Settings

__all__ = ["install_tracing", "trace_statements", "tracer_provider_for"]

_NOT_TRACED = "/metrics,/health/live,/health/ready"


def tracer_provider_for(settings: Settings) -> TracerProvider | None:
    """A provider exporting by OTLP over HTTP to ``settings.otlp_endpoint``; None if unset."""
    if settings.otlp_endpoint is None:
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    provider = TracerProvider(
        resource=Resource.create({"service.name": settings.otel_service_name})
    )
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otlp_endpoint))
    )
    return provider


def install_tracing(app: FastAPI, provider: TracerProvider) -> None:
    """A server span around every request (but ``/metrics`` and the health probes)."""
    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=provider,
        excluded_urls=_NOT_TRACED,
        # The ASGI middleware's per-message spans (each receive, each send) only add noise.
        exclude_spans=["receive", "send"],
    )


def trace_statements(db: Database[Any], provider: TracerProvider) -> None:
    """Statement spans on each of *db*'s engines (call after it started; again after a restart).

    OpenTelemetry's `SQLAlchemyInstrumentor` is process-wide and patches engine creation;
    its `EngineTracer` attaches to one engine, which is what an app with its own lifespan
    (and tests with many apps) needs. Its connection counter goes to a no-op meter: the pool
    metrics are sessionwise's.
    """
    tracer = trace.get_tracer("opentelemetry.instrumentation.sqlalchemy", tracer_provider=provider)
    usage = metrics.NoOpMeterProvider().get_meter("unused").create_up_down_counter("unused")
    for engine in db.engines.values():
        EngineTracer(tracer, engine.sync_engine, usage)  # type: ignore[no-untyped-call]
