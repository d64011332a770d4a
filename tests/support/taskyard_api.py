"""Arranging data through taskyard's HTTP API, the way a client would."""

from __future__ import annotations

import uuid
from typing import Any

import httpx


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def create_project(client: httpx.AsyncClient, name: str | None = None) -> int:
    response = await client.post("/api/v1/projects", json={"name": name or unique("project")})
    assert response.status_code == 201, response.text
    project_id: int = response.json()["id"]
    return project_id


async def create_worker(client: httpx.AsyncClient, project_id: int, name: str | None = None) -> int:
    response = await client.post(
        "/api/v1/workers", json={"project_id": project_id, "name": name or unique("worker")}
    )
    assert response.status_code == 201, response.text
    worker_id: int = response.json()["id"]
    return worker_id


async def create_task(client: httpx.AsyncClient, project_id: int, **fields: Any) -> dict[str, Any]:
    body = {"project_id": project_id, "title": unique("task"), **fields}
    response = await client.post("/api/v1/tasks", json=body)
    assert response.status_code == 201, response.text
    task: dict[str, Any] = response.json()
    return task


async def pool_status(client: httpx.AsyncClient) -> dict[str, int]:
    """The ``pool`` object of ``/health/ready`` (present on 200 and 503 alike)."""
    response = await client.get("/health/ready")
    pool: dict[str, int] = response.json()["pool"]
    return pool
