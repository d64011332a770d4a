"""The four task calls on Starlette and a bare asyncpg pool: the baseline.

Same URLs, status codes and JSON as taskyard, and the same guarantees where they cost work:
the bearer key is checked with one indexed lookup (by its public key id, then a constant-time
hash comparison, as taskyard does), every statement is limited to projects the caller is a
member of, and a write is committed before its response is sent. Everything else is done
the cheapest way: one statement per call (writes use ``INSERT/UPDATE ... RETURNING`` inside a
CTE that also fetches the embedded project and assignee), no ORM, no validation library, no
explicit transaction (each statement commits on its own), and one pooled connection per
request for both statements.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bench.apps.keys import key_id_of
from bench.apps.pagination import encode_cursor

DATABASE_URL = os.environ.get(
    "BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/bench_raw"
)
# Same ceiling as taskyard's pool (sessionwise defaults: pool_size 15, no overflow).
POOL_MIN, POOL_MAX = 5, 15
STATUSES = frozenset({"pending", "in_progress", "done", "failed", "cancelled"})
MAX_ID = 2**31 - 1

_TASK_COLUMNS = """
    t.id, t.project_id, t.title, t.description, t.status, t.priority, t.version,
    t.created_at, t.updated_at, t.lease_expires_at,
    t.payload, t.result, t.attempts, t.max_attempts, t.run_after, t.claimed_at, t.last_error,
    p.name AS project_name, w.id AS assignee_id, w.name AS assignee_name
"""
_AUTH = """
    SELECT k.key_hash, k.user_id FROM api_keys k
    WHERE k.key_id = $1 AND k.revoked_at IS NULL
"""
_GET = f"""
    SELECT {_TASK_COLUMNS}
    FROM tasks t
    JOIN project_members m ON m.project_id = t.project_id AND m.user_id = $2
    JOIN projects p ON p.id = t.project_id
    LEFT JOIN workers w ON w.id = t.assignee_id
    WHERE t.id = $1
"""
_LIST = f"""
    SELECT {_TASK_COLUMNS}
    FROM tasks t
    JOIN project_members m ON m.project_id = t.project_id AND m.user_id = $2
    JOIN projects p ON p.id = t.project_id
    LEFT JOIN workers w ON w.id = t.assignee_id
    WHERE t.project_id = $1 AND t.id > $3
    ORDER BY t.id
    LIMIT $4
"""
_CREATE = f"""
    WITH t AS (
        INSERT INTO tasks (project_id, title, description, status, priority, assignee_id,
                           version, created_at, updated_at, run_after, attempts, max_attempts)
        SELECT $1, $2, $3, 'pending', $4, $5, 1, now(), now(), now(), 0,
               (SELECT max_attempts FROM projects WHERE id = $1)
        WHERE EXISTS (SELECT 1 FROM project_members WHERE project_id = $1 AND user_id = $6)
          AND ($5::integer IS NULL
               OR EXISTS (SELECT 1 FROM workers WHERE id = $5 AND project_id = $1))
        RETURNING *
    )
    SELECT {_TASK_COLUMNS}
    FROM t
    JOIN projects p ON p.id = t.project_id
    LEFT JOIN workers w ON w.id = t.assignee_id
"""
_PATCH = f"""
    WITH t AS (
        UPDATE tasks SET
            status = coalesce($2, status),
            title = coalesce($3, title),
            priority = coalesce($4, priority),
            -- taskyard: leaving in_progress ends the lease
            lease_expires_at = CASE WHEN coalesce($2, status) = 'in_progress'
                                    THEN lease_expires_at END,
            version = version + 1,
            updated_at = now()
        WHERE id = $1
          AND project_id IN (SELECT project_id FROM project_members WHERE user_id = $5)
        RETURNING *
    )
    SELECT {_TASK_COLUMNS}
    FROM t
    JOIN projects p ON p.id = t.project_id
    LEFT JOIN workers w ON w.id = t.assignee_id
"""


class HttpError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        self.status = status
        self.detail = detail


def _timestamp(value: datetime | None) -> str | None:
    # pydantic writes UTC as "Z"; asyncpg returns timestamptz in UTC.
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def _task_json(row: Mapping[str, Any]) -> dict[str, Any]:
    assignee = row["assignee_id"]
    return {
        "id": row["id"],
        "project_id": row["project_id"],
        "title": row["title"],
        "description": row["description"],
        "status": row["status"],
        "priority": row["priority"],
        "assignee": None if assignee is None else {"id": assignee, "name": row["assignee_name"]},
        "project": {"id": row["project_id"], "name": row["project_name"]},
        "version": row["version"],
        "created_at": _timestamp(row["created_at"]),
        "updated_at": _timestamp(row["updated_at"]),
        "lease_expires_at": _timestamp(row["lease_expires_at"]),
        # asyncpg returns json columns as their text.
        "payload": None if row["payload"] is None else json.loads(row["payload"]),
        "result": None if row["result"] is None else json.loads(row["result"]),
        "attempts": row["attempts"],
        "max_attempts": row["max_attempts"],
        "run_after": _timestamp(row["run_after"]),
        "claimed_at": _timestamp(row["claimed_at"]),
        "last_error": row["last_error"],
    }


def _task_response(row: Mapping[str, Any], status: int = 200) -> JSONResponse:
    return JSONResponse(_task_json(row), status, headers={"ETag": f'"{row["version"]}"'})


async def _caller(connection: asyncpg.Connection, request: Request) -> int:
    """The user id of the bearer key: one indexed lookup and a constant-time comparison."""
    scheme, _, api_key = request.headers.get("authorization", "").partition(" ")
    key_id = key_id_of(api_key) if scheme.lower() == "bearer" else None
    if key_id is not None:
        row = await connection.fetchrow(_AUTH, key_id)
        digest = hashlib.sha256(api_key.encode()).hexdigest()
        if row is not None and hmac.compare_digest(row["key_hash"], digest):
            user_id: int = row["user_id"]
            return user_id
    raise HttpError(401, "missing or invalid API key")


def _int_field(value: object, name: str, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise HttpError(422, f"{name}: an integer from {low} to {high}")
    return value


def _text_field(value: object, name: str, low: int, high: int) -> str:
    if not isinstance(value, str) or not low <= len(value.strip()) <= high or "\x00" in value:
        raise HttpError(422, f"{name}: text of {low} to {high} characters")
    return value.strip() if name == "title" else value


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body())
    except ValueError:
        raise HttpError(400, "body: not JSON") from None
    if not isinstance(body, dict):
        raise HttpError(422, "body: a JSON object")
    return body


def _pool(request: Request) -> asyncpg.Pool:
    pool: asyncpg.Pool = request.app.state.pool
    return pool


async def get_task(request: Request) -> Response:
    task_id = request.path_params["task_id"]
    async with _pool(request).acquire() as connection:
        user_id = await _caller(connection, request)
        row = await connection.fetchrow(_GET, task_id, user_id) if task_id <= MAX_ID else None
    if row is None:
        raise HttpError(404, "task not found")
    return _task_response(row)


async def list_tasks(request: Request) -> Response:
    query = request.query_params
    try:
        project_id = int(query["project_id"])
        limit = int(query.get("limit", "50"))
    except (KeyError, ValueError):
        raise HttpError(422, "project_id and limit: integers") from None
    _int_field(project_id, "project_id", 1, MAX_ID)
    _int_field(limit, "limit", 1, 100)
    async with _pool(request).acquire() as connection:
        user_id = await _caller(connection, request)
        rows = await connection.fetch(_LIST, project_id, user_id, 0, limit + 1)
    page = rows[:limit]
    cursor = None
    if len(rows) > limit:
        cursor = encode_cursor(request.app.state.cursor_key, "tasks", page[-1]["id"])
    return JSONResponse({"items": [_task_json(row) for row in page], "next_cursor": cursor})


async def create_task(request: Request) -> Response:
    body = await _json_body(request)
    unknown = set(body) - {"project_id", "title", "description", "priority", "assignee_id"}
    if unknown:
        raise HttpError(422, f"{sorted(unknown)[0]}: unknown field")
    project_id = _int_field(body.get("project_id"), "project_id", 1, MAX_ID)
    title = _text_field(body.get("title"), "title", 1, 200)
    description = _text_field(body.get("description", ""), "description", 0, 10_000)
    priority = _int_field(body.get("priority", 0), "priority", -1000, 1000)
    assignee = body.get("assignee_id")
    assignee_id = None if assignee is None else _int_field(assignee, "assignee_id", 1, MAX_ID)
    async with _pool(request).acquire() as connection:
        user_id = await _caller(connection, request)
        row = await connection.fetchrow(
            _CREATE, project_id, title, description, priority, assignee_id, user_id
        )
    if row is None:
        raise HttpError(404, "project (or assignee) not found")
    return _task_response(row, 201)


async def patch_task(request: Request) -> Response:
    task_id = request.path_params["task_id"]
    body = await _json_body(request)
    unknown = set(body) - {"status", "title", "priority"}
    if unknown:
        raise HttpError(422, f"{sorted(unknown)[0]}: unknown field")
    status = body.get("status")
    if status is not None and status not in STATUSES:
        raise HttpError(422, f"status: one of {sorted(STATUSES)}")
    title = None if "title" not in body else _text_field(body["title"], "title", 1, 200)
    priority = (
        None if "priority" not in body else _int_field(body["priority"], "priority", -1000, 1000)
    )
    async with _pool(request).acquire() as connection:
        user_id = await _caller(connection, request)
        row = None
        if task_id <= MAX_ID:
            row = await connection.fetchrow(_PATCH, task_id, status, title, priority, user_id)
    if row is None:
        raise HttpError(404, "task not found")
    return _task_response(row)


async def ready(request: Request) -> Response:
    await _pool(request).fetchval("SELECT 1")
    return JSONResponse({"status": "ready"})


async def http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HttpError)
    return JSONResponse({"detail": error.detail}, error.status)


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    pool = await asyncpg.create_pool(DATABASE_URL, min_size=POOL_MIN, max_size=POOL_MAX)
    app.state.pool = pool
    app.state.cursor_key = secrets.token_bytes(32)
    try:
        yield
    finally:
        await pool.close()


app = Starlette(
    routes=[
        Route("/api/v1/tasks/{task_id:int}", get_task, methods=["GET"]),
        Route("/api/v1/tasks/{task_id:int}", patch_task, methods=["PATCH"]),
        Route("/api/v1/tasks", list_tasks, methods=["GET"]),
        Route("/api/v1/tasks", create_task, methods=["POST"]),
        Route("/health/ready", ready, methods=["GET"]),
    ],
    exception_handlers={HttpError: http_error},
    lifespan=lifespan,
)
