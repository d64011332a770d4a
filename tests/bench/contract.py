"""The four calls every benchmark app must answer alike, and how their answers are compared.

Shared by the test of the taskyard comparison apps (`test_apps_same_json`) and of the library
section's apps (`test_library_apps_same_json`).
"""

from __future__ import annotations

import re
from typing import Any

import httpx

from bench import databases
from sessionwise import Database
from taskyard.migrate import upgrade
from taskyard.users.schemas import UserCreate
from taskyard.users.service import UserService

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")


async def seed_like_the_benchmark(url: str) -> databases.Seeded:
    """What the benchmark does with ``taskyard migrate`` and ``taskyard users create``."""
    async with Database(url) as db:
        await upgrade(db)
        async with db.session() as session:
            data = UserCreate(email=databases.OWNER_EMAIL, name="Bench Owner")
            _, issued = await UserService(session).create_user(data)
    return await databases.seed(url, issued.api_key, claim_stock=0)


async def four_calls(client: httpx.AsyncClient, seeded: databases.Seeded) -> dict[str, Any]:
    """Get one, list 20, create, patch status: (status, content type, body) of each."""
    first, second = seeded.task_ids[0], seeded.task_ids[1]
    responses = {
        "get": await client.get(f"/api/v1/tasks/{first}"),
        "list": await client.get(
            "/api/v1/tasks", params={"project_id": seeded.project_id, "limit": 20}
        ),
        "create": await client.post(
            "/api/v1/tasks",
            json={
                "project_id": seeded.project_id,
                "title": "written by the test",
                "description": "same on every app",
                "priority": 3,
                "assignee_id": seeded.worker_ids[1],
            },
        ),
        "patch": await client.patch(f"/api/v1/tasks/{second}", json={"status": "done"}),
    }
    return {
        call: (response.status_code, response.headers.get("content-type"), response.json())
        for call, response in responses.items()
    }


def comparable(value: Any) -> Any:
    """The body with timestamps reduced to their format and cursors to their presence."""
    if isinstance(value, dict):
        return {
            key: (
                "<cursor>" if key == "next_cursor" and isinstance(item, str) else comparable(item)
            )
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [comparable(item) for item in value]
    if isinstance(value, str) and TIMESTAMP.fullmatch(value):
        return "<UTC timestamp>"
    return value
