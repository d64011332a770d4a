"""After the hostile-input suite's requests, neither ``/metrics`` nor any log line of the
server holds a user's data: no titles, names, emails, keys, project names, or anything the
hostile requests sent."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.faults.test_hostile_input import CASES, ODD_BUT_VALID_TITLES, World, _send
from tests.support.taskyard_api import create_task
from tests.taskyard.conftest import create_actor
from tests.taskyard.operations.conftest import operated_app
from tests.taskyard.operations.test_request_ids import Collected

# The test's own HTTP client logs each request it sends; those lines are not the server's.
CLIENT_LOGGERS = ("httpx", "httpcore")


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, bytes):
        yield value.decode("utf-8", "replace")
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _sent_by_hostile_cases() -> set[str]:
    """The free text the hostile requests carry in a JSON body or a query.

    Left out: placeholders, and single words of the API's own vocabulary (``name``,
    ``sleeping``, ``owner``), which are field names and enum values, not anyone's data.
    """
    sent: set[str] = set()
    for case in CASES:
        for text in (*_strings(case.json), *_strings(case.params)):
            vocabulary = text.isascii() and text.isalpha() and text.islower() and len(text) <= 12
            placeholder = text.startswith("{") and text.endswith("}")
            if len(text.strip()) >= 4 and not vocabulary and not placeholder:
                sent.add(text)
    return sent


@pytest.fixture
def server_log() -> Iterator[Collected]:
    handler = Collected()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)  # as `taskyard serve` configures it
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


async def test_metrics_and_logs_hold_no_user_data(sqlite_url: str, server_log: Collected) -> None:
    # Every session is "slow", so that each request logs the warning that names its route.
    database = {"slow_session_warning": 1e-9}
    async with operated_app(sqlite_url, database=database) as app:
        stranger = await create_actor(app.db, "stranger")
        async with app.client() as mine, app.client() as theirs:
            theirs.headers.update(stranger.headers)
            project_name = "Zebra Project 4711"
            project = (await mine.post("/api/v1/projects", json={"name": project_name})).json()
            await mine.post("/api/v1/projects", json={"name": "Second Project 4712"})
            worker_name = "Worker Quokka 99"
            worker = (
                await mine.post(
                    "/api/v1/workers", json={"project_id": project["id"], "name": worker_name}
                )
            ).json()
            titles = ["Secret title 9931", *ODD_BUT_VALID_TITLES.values()]
            tasks = [await create_task(mine, project["id"], title=title) for title in titles]
            other = (await theirs.post("/api/v1/projects", json={"name": "Their Project 5"})).json()
            other_worker = await _created(
                theirs, "/api/v1/workers", {"project_id": other["id"], "name": "Their Worker"}
            )
            other_task = await create_task(theirs, other["id"], title="Their title 77")
            page = (await mine.get("/api/v1/projects", params={"limit": 1})).json()
            world = World(
                ids={
                    "project": project["id"],
                    "worker": worker["id"],
                    "task": tasks[0]["id"],
                    "other_project": other["id"],
                    "other_worker": other_worker,
                    "other_task": other_task["id"],
                    "projects_cursor": page["next_cursor"],
                    "tampered": page["next_cursor"][::-1],
                    "forged": "Zm9yZ2Vk.bm90LWEtbWFj",
                }
            )
            for case in CASES:
                response = await _send(mine, case, world)
                assert response.status_code < 500, (case, response.text)
            async with app.client() as scraper:
                metrics = (await scraper.get("/metrics")).text

    secret = {
        project_name,
        "Second Project 4712",
        "Their Project 5",
        worker_name,
        "Their Worker",
        "Their title 77",
        *(title for title in titles if len(title.strip()) >= 4),
        app.actor.email,
        stranger.email,
        app.actor.api_key,
        stranger.api_key,
        *_sent_by_hostile_cases(),
    }
    logs = [line for line in server_log.lines if not line.startswith(CLIENT_LOGGERS)]
    server_lines = [
        line for line in logs if not any(f'"logger": "{name}' in line for name in CLIENT_LOGGERS)
    ]
    assert any("session held" in line for line in server_lines)  # the scan saw real lines
    assert "db_client_connection_count" in metrics
    for text in secret:
        assert text not in metrics, text
        for line in server_lines:
            assert text not in line, (text, line)
    # Nothing else of a path either: the ids of the caller's resources are not in /metrics.
    assert f"/api/v1/tasks/{tasks[0]['id']}" not in metrics


async def _created(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> int:
    response = await client.post(path, json=body)
    assert response.status_code == 201, response.text
    created: int = response.json()["id"]
    return created
