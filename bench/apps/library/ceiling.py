"""The ceiling: FastAPI with pydantic models on a bare asyncpg pool, no session layer at all.

What any FastAPI app of this contract pays before a session toolkit adds anything: routing,
dependency resolution, request validation and response serialization through the same
pydantic models the other apps use. The database side is the cheapest there is: one statement
per call (writes are ``INSERT/UPDATE ... RETURNING`` in a CTE that also fetches the embedded
project and assignee), each its own implicit transaction, committed before the response.
The pool is ``bench.apps.raw``'s (5 to 15 connections).
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Annotated, Any

import asyncpg  # type: ignore[import-untyped]
from fastapi import Depends, FastAPI, HTTPException, Query, Request

from bench.apps.library.schemas import Ref, TaskCreate, TaskPage, TaskRead, TaskUpdate
from bench.apps.pagination import encode_cursor

DATABASE_URL = os.environ.get(
    "BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/bench_ceiling"
)
POOL_MIN, POOL_MAX = 5, 15

_COLUMNS = """
    t.id, t.project_id, t.title, t.description, t.status, t.priority, t.version,
    t.created_at, t.updated_at, t.lease_expires_at,
    t.payload, t.result, t.attempts, t.max_attempts, t.run_after, t.claimed_at, t.last_error,
    p.name AS project_name, w.id AS assignee_id, w.name AS assignee_name
"""
_JOINS = """
    JOIN projects p ON p.id = t.project_id
    LEFT JOIN workers w ON w.id = t.assignee_id
"""
_GET = f"SELECT {_COLUMNS} FROM tasks t {_JOINS} WHERE t.id = $1"
_LIST = f"SELECT {_COLUMNS} FROM tasks t {_JOINS} WHERE t.project_id = $1 ORDER BY t.id LIMIT $2"
_CREATE = f"""
    WITH t AS (
        INSERT INTO tasks (project_id, title, description, status, priority, assignee_id,
                           version, created_at, updated_at, run_after, attempts, max_attempts)
        SELECT $1, $2, $3, 'pending', $4, $5, 1, now(), now(), now(), 0, p.max_attempts
        FROM projects p WHERE p.id = $1
        RETURNING *
    )
    SELECT {_COLUMNS} FROM t {_JOINS}
"""
_PATCH = f"""
    WITH t AS (
        UPDATE tasks SET
            status = coalesce($2, status),
            title = coalesce($3, title),
            priority = coalesce($4, priority),
            lease_expires_at = CASE WHEN coalesce($2, status) = 'in_progress'
                                    THEN lease_expires_at END,
            version = version + 1,
            updated_at = now()
        WHERE id = $1
        RETURNING *
    )
    SELECT {_COLUMNS} FROM t {_JOINS}
"""


def _task(row: Mapping[str, Any]) -> TaskRead:
    assignee = row["assignee_id"]
    return TaskRead(
        id=row["id"],
        project_id=row["project_id"],
        title=row["title"],
        description=row["description"],
        status=row["status"],
        priority=row["priority"],
        assignee=None if assignee is None else Ref(id=assignee, name=row["assignee_name"]),
        project=Ref(id=row["project_id"], name=row["project_name"]),
        version=row["version"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        lease_expires_at=row["lease_expires_at"],
        # asyncpg returns json columns as their text.
        payload=None if row["payload"] is None else json.loads(row["payload"]),
        result=None if row["result"] is None else json.loads(row["result"]),
        attempts=row["attempts"],
        max_attempts=row["max_attempts"],
        run_after=row["run_after"],
        claimed_at=row["claimed_at"],
        last_error=row["last_error"],
    )


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    pool = await asyncpg.create_pool(DATABASE_URL, min_size=POOL_MIN, max_size=POOL_MAX)
    app.state.pool = pool
    app.state.cursor_key = secrets.token_bytes(32)
    try:
        yield
    finally:
        await pool.close()


app = FastAPI(lifespan=lifespan)


async def get_pool(request: Request) -> asyncpg.Pool:
    pool: asyncpg.Pool = request.app.state.pool
    return pool


PoolDep = Annotated[asyncpg.Pool, Depends(get_pool)]


@app.get("/health/ready")
async def ready(pool: PoolDep) -> dict[str, str]:
    await pool.fetchval("SELECT 1")
    return {"status": "ready"}


@app.get("/api/v1/tasks/{task_id}")
async def read_task(task_id: int, pool: PoolDep) -> TaskRead:
    row = await pool.fetchrow(_GET, task_id)
    if row is None:
        raise HTTPException(404, "Task not found")
    return _task(row)


@app.get("/api/v1/tasks")
async def read_tasks(
    request: Request,
    project_id: int,
    pool: PoolDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> TaskPage:
    rows = await pool.fetch(_LIST, project_id, limit + 1)
    page = rows[:limit]
    cursor = None
    if len(rows) > limit:
        cursor = encode_cursor(request.app.state.cursor_key, "tasks", page[-1]["id"])
    return TaskPage(items=[_task(row) for row in page], next_cursor=cursor)


@app.post("/api/v1/tasks", status_code=201)
async def create_task(data: TaskCreate, pool: PoolDep) -> TaskRead:
    row = await pool.fetchrow(
        _CREATE, data.project_id, data.title, data.description, data.priority, data.assignee_id
    )
    if row is None:
        raise HTTPException(404, "Project not found")
    return _task(row)


@app.patch("/api/v1/tasks/{task_id}")
async def update_task(task_id: int, data: TaskUpdate, pool: PoolDep) -> TaskRead:
    row = await pool.fetchrow(_PATCH, task_id, data.status, data.title, data.priority)
    if row is None:
        raise HTTPException(404, "Task not found")
    return _task(row)
