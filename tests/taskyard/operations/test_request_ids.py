"""X-Request-ID: from the client's header (if plain) to the response, the log line and the
problem body; replaced, never echoed, when it is not."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from taskyard.operations.json_logs import JsonFormatter
from taskyard.operations.request_ids import RequestIdFilter, valid_request_id
from tests.support.taskyard_api import create_project, create_task
from tests.taskyard.operations.conftest import operated_app


class Collected(logging.Handler):
    """A handler like the server's: the request id filter, then the JSON formatter."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.addFilter(RequestIdFilter())
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def log_lines() -> Iterator[Collected]:
    handler = Collected()
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


async def test_request_id_travels_from_header_to_log_line_and_problem(
    sqlite_url: str, log_lines: Collected
) -> None:
    # Every session is "slow": each request logs the warning naming its route.
    database = {"slow_session_warning": 1e-9}
    async with operated_app(sqlite_url, database=database) as app, app.client() as client:
        project = await create_project(client)
        task = await create_task(client, project)
        log_lines.lines.clear()
        found = await client.get(
            f"/api/v1/tasks/{task['id']}", headers={"X-Request-ID": "req-42.a:b"}
        )
        missing = await client.get("/api/v1/tasks/999999", headers={"X-Request-ID": "req-43"})

    assert found.headers["x-request-id"] == "req-42.a:b"
    assert missing.headers["x-request-id"] == "req-43"
    assert missing.status_code == 404
    assert missing.json()["request_id"] == "req-43"
    records = [json.loads(line) for line in log_lines.lines]
    slow = [record for record in records if record["message"].startswith("session held")]
    assert [record["request_id"] for record in slow] == ["req-42.a:b", "req-43"]
    for record in slow:
        assert record["session_label"] == "GET /api/v1/tasks/{task_id}"
        assert record["statements"] >= 1
        assert record["level"] == "WARNING"
        assert record["logger"] == "sessionwise"


@pytest.mark.parametrize(
    "sent",
    [
        "has spaces",
        "x" * 129,
        'quote"s',
        "ünïcode",
        "new\\nline",
        "",
        "<script>",
    ],
)
async def test_an_unfit_request_id_is_replaced_not_echoed(sqlite_url: str, sent: str) -> None:
    async with operated_app(sqlite_url) as app, app.client() as client:
        response = await client.get(
            "/api/v1/tasks/999999", headers={"X-Request-ID": sent.encode("utf-8")}
        )
    given = response.headers["x-request-id"]
    assert given != sent
    assert len(given) == 32
    assert response.json()["request_id"] == given


async def test_without_a_header_each_request_gets_its_own_id(sqlite_url: str) -> None:
    async with operated_app(sqlite_url) as app, app.client() as client:
        first = await client.get("/health/live")
        second = await client.get("/health/live")
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


async def test_a_500_carries_the_request_id_in_header_and_body(sqlite_url: str) -> None:
    async with operated_app(sqlite_url) as app, app.client() as client:
        # The tasks table gone under the app: a bug-class error, answered 500 by Starlette's
        # outermost handler, after the request id middleware has returned.
        async with app.db.session() as session:
            await session.execute(text("DROP TABLE tasks"))
        response = await client.get("/api/v1/tasks/1", headers={"X-Request-ID": "req-500"})
    assert response.status_code == 500
    assert response.headers["x-request-id"] == "req-500"
    assert response.json()["request_id"] == "req-500"


def test_valid_request_ids() -> None:
    assert valid_request_id(b"0f8e-uuid:1.2_3") == "0f8e-uuid:1.2_3"
    assert valid_request_id(None) != valid_request_id(None)
    assert valid_request_id(b"a b") != "a b"
