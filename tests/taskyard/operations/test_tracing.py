"""A create's trace, seen by an in-memory span exporter: the request span, and under it the
session's wait for a connection, its statements and its commit."""

from __future__ import annotations

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from taskyard.app import create_app
from taskyard.settings import Settings
from tests.support.taskyard_api import create_project
from tests.taskyard.operations.conftest import operated_app


def _under(span: ReadableSpan, root: ReadableSpan, spans: dict[int, ReadableSpan]) -> bool:
    """Whether *root* is among *span*'s ancestors."""
    parent = span.parent
    while parent is not None:
        if parent.span_id == root.context.span_id:
            return True
        above = spans.get(parent.span_id)
        parent = above.parent if above is not None else None
    return False


async def test_a_create_is_one_tree_request_wait_statements_commit(database_url: str) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    async with operated_app(database_url, tracer_provider=provider) as app, app.client() as client:
        project = await create_project(client)
        exporter.clear()
        created = await client.post("/api/v1/tasks", json={"project_id": project, "title": "t"})
        assert created.status_code == 201
        assert (await client.get("/metrics")).status_code == 200  # not traced
    provider.shutdown()

    finished = exporter.get_finished_spans()
    by_id = {span.context.span_id: span for span in finished}
    [request] = [span for span in finished if span.parent is None]
    assert request.name == "POST /api/v1/tasks"
    assert request.attributes is not None
    assert request.attributes["http.route"] == "/api/v1/tasks"
    assert {span.context.trace_id for span in finished} == {request.context.trace_id}

    children = [span for span in finished if span is not request]
    assert all(_under(span, request, by_id) for span in children)
    names = [span.name for span in children]
    assert "sessionwise.connection.wait" in names
    assert "sessionwise.commit" in names
    statements = [
        span for span in children if span.attributes and "db.system" in str(dict(span.attributes))
    ]
    # The key lookup, the project and assignee check, the insert: one span each.
    assert len(statements) >= 3, names
    inserts = [span for span in statements if span.name.startswith("INSERT")]
    assert inserts, names
    # The commit closes the unit of work: it starts after the last statement has begun.
    commit = next(span for span in children if span.name == "sessionwise.commit")
    assert commit.start_time is not None
    assert all(
        span.start_time is not None and span.start_time <= commit.start_time for span in statements
    )


def test_tracing_is_off_by_default() -> None:
    app = create_app(Settings(database_url="sqlite+aiosqlite:///:memory:"))
    # No OpenTelemetry middleware in the stack: nothing to pay per request.
    assert not [m for m in app.user_middleware if "OpenTelemetry" in repr(m.cls)]
