"""The application factory. No global engine: the `Database` lives in the app's lifespan."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version

from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider

from sessionwise import Database
from sessionwise.fastapi import install_error_handlers
from sessionwise.metrics import FanOut, MetricsRecorder
from taskyard import health, problem_docs
from taskyard.board import mount_board
from taskyard.body_limit import BodyLimitMiddleware
from taskyard.idempotency import describe_retention, install_idempotency, purging
from taskyard.openapi_contract import document_contract, operation_id
from taskyard.operations import metrics as metrics_endpoint
from taskyard.operations.metrics import AppMetrics
from taskyard.operations.request_ids import RequestIdMiddleware
from taskyard.operations.request_metrics import RequestMetricsMiddleware, request_duration
from taskyard.operations.tracing import install_tracing, trace_statements, tracer_provider_for
from taskyard.pagination import CursorCodec
from taskyard.problems import database_problem, install_problem_handlers, problem_responses
from taskyard.projects.router import router as projects_router
from taskyard.settings import Settings
from taskyard.stop_signals import on_stop_signals
from taskyard.tasks.backoff import RetryPolicy
from taskyard.tasks.router import router as tasks_router
from taskyard.tasks.wakeups import WakeupHub
from taskyard.users.router import router as users_router
from taskyard.workers.router import router as workers_router

__all__ = ["API_PREFIX", "create_app", "create_app_from_env", "create_database"]

API_PREFIX = "/api/v1"
# Every operation under /api/v1 can answer these; documented so clients (and schema-driven
# fuzzers) know the problem+json shape. Declaring 422 also replaces FastAPI's default entry.
_API_PROBLEMS = problem_responses(400, 401, 404, 413, 422, 503, 504)


def create_database(settings: Settings, metrics: MetricsRecorder | None = None) -> Database:
    """The service's `Database` (not started) for *settings*, reporting to *metrics*."""
    return Database(settings.database_url, settings=settings.database, metrics=metrics)


def create_app(
    settings: Settings | None = None, *, tracer_provider: TracerProvider | None = None
) -> FastAPI:
    """A taskyard app; its lifespan starts a `Database` built from *settings*.

    Tests may point the app at another started `Database` on ``app.state.sessionwise_database``
    (sessionwise's ``api_client`` fixture does, after running the lifespan). Traces go to
    *tracer_provider*, else to ``settings.otlp_endpoint`` if set; else there are none.
    """
    settings = settings or Settings()
    tracer_provider = tracer_provider or tracer_provider_for(settings)
    app_metrics = AppMetrics() if settings.metrics else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = create_database(settings, _recorder(app_metrics, tracer_provider))
        # The purge runs off the request path, in sessions of its own; it logs its failures
        # and never raises, so it cannot take the server down.
        interval = settings.idempotency_purge_interval
        async with (
            db.lifespan(app),
            purging(db, idempotency, interval),
            # Exits first: waiting claims answer before the database closes.
            WakeupHub().running(db) as wakeups,
        ):
            if tracer_provider is not None:
                trace_statements(db, tracer_provider)
            app.state.wakeups = wakeups
            with on_stop_signals(wakeups.drain):
                yield

    app = FastAPI(
        title="taskyard",
        version=version("taskyard"),
        summary="A task queue for teams and their agents.",
        description=describe_retention(settings),
        lifespan=lifespan,
        generate_unique_id_function=operation_id,  # "tasks-create_task", not FastAPI's default
    )
    app.state.settings = settings
    app.state.retry_policy = RetryPolicy(
        base=settings.retry_base_delay, cap=settings.retry_max_delay, jitter=settings.retry_jitter
    )
    idempotency = install_idempotency(app, settings)
    key = settings.secret_key.get_secret_value().encode() if settings.secret_key else None
    secret = key or secrets.token_bytes(32)
    app.state.cursor_codec = CursorCodec(secret)
    install_problem_handlers(app)
    install_error_handlers(app, render=database_problem)  # 409 / 503 / 504 as problems
    app.add_middleware(BodyLimitMiddleware, max_body_size=settings.max_body_size)
    # Operations (taskyard.operations); each line can go on its own. Added last, outermost:
    # the request id and the clock are set before any other middleware runs.
    if app_metrics is not None:
        app.state.metrics = app_metrics
        app.state.queue_events = app_metrics.queue
        duration = request_duration(app_metrics.registry)
        app.add_middleware(RequestMetricsMiddleware, duration=duration)
    app.add_middleware(RequestIdMiddleware)
    if tracer_provider is not None:
        install_tracing(app, tracer_provider)

    # Straight onto the app, hottest first: FastAPI matches a request against the routes in
    # order, and every level of router nesting adds its own pass (~15 % of the CPU of
    # GET /tasks/{id} with the task routes third under an /api/v1 router).
    for router in (tasks_router, workers_router, projects_router, users_router):
        app.include_router(router, prefix=API_PREFIX, responses=_API_PROBLEMS)
    app.include_router(health.router)
    if app_metrics is not None:
        app.include_router(metrics_endpoint.router)  # GET /metrics, not in the schema
    app.include_router(problem_docs.router)
    mount_board(app, secret)  # /board: pages for people, not in the OpenAPI document
    document_contract(app)  # operation ids' counterpart: Problem schema, OpenAPI links
    return app


def _recorder(
    app_metrics: AppMetrics | None, tracer_provider: TracerProvider | None
) -> MetricsRecorder | None:
    """Where the Database reports: the app's Prometheus registry, the session spans, both."""
    from sessionwise.metrics.otel import OpenTelemetrySpans

    recorders: list[MetricsRecorder] = []
    if app_metrics is not None:
        recorders.append(app_metrics.database)
    if tracer_provider is not None:
        recorders.append(OpenTelemetrySpans(tracer_provider))
    if not recorders:
        return None
    return recorders[0] if len(recorders) == 1 else FanOut(*recorders)


def create_app_from_env() -> FastAPI:
    """`create_app` with `Settings` from ``TASKYARD_*``: uvicorn's factory for ``--workers``."""
    return create_app(Settings())
