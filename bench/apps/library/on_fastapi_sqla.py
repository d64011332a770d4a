"""The library contract on fastapi-sqla 4.0.1, as its README teaches.

``sqlalchemy_url`` from the environment (an ``asyncpg`` URL turns on its asyncio support),
``await fastapi_sqla.startup()`` in the lifespan (it reflects the tables),
``fastapi_sqla.setup_middlewares(app)`` (a session per request, committed when the response
starts, before its body is sent), entity classes on ``fastapi_sqla.Base`` (deferred
reflection: columns come from the database) and the ``AsyncSession`` dependency; engine
options at its defaults. Writes ``flush()``; the middleware commits. The embedded project and
assignee are relationships with ``lazy="joined"``, as in the other ORM apps.

fastapi-sqla pins ``fastapi<0.142``; this runs on the interpreter of ``bench/.peers-venv``,
where its wheel is installed without dependencies next to today's FastAPI (`bench.peers`).
"""

# No `from __future__ import annotations`: FastAPI reads the annotations at route creation.

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated

import fastapi_sqla
from fastapi import FastAPI, HTTPException, Query
from fastapi_sqla import AsyncSession, Base
from sqlalchemy import select, text
from sqlalchemy.orm import Mapped, relationship

from bench.apps.library.schemas import TaskCreate, TaskPage, TaskRead, TaskUpdate, ends_lease
from bench.apps.pagination import encode_cursor

CURSOR_KEY = secrets.token_bytes(32)


class Project(Base):
    __tablename__ = "projects"


class Worker(Base):
    __tablename__ = "workers"


class Task(Base):
    __tablename__ = "tasks"

    project: Mapped[Project] = relationship(lazy="joined")
    assignee: Mapped[Worker | None] = relationship(lazy="joined")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    await fastapi_sqla.startup()
    yield


app = FastAPI(lifespan=lifespan)
fastapi_sqla.setup_middlewares(app)


@app.get("/health/ready")
async def ready(session: AsyncSession) -> dict[str, str]:
    await session.execute(text("select 'ok'"))
    return {"status": "ready"}


@app.get("/api/v1/tasks/{task_id}")
async def read_task(task_id: int, session: AsyncSession) -> TaskRead:
    task = await session.get(Task, task_id)
    if task is None:
        raise HTTPException(404, "Task not found")
    return TaskRead.model_validate(task)


@app.get("/api/v1/tasks")
async def read_tasks(
    project_id: int, session: AsyncSession, limit: Annotated[int, Query(ge=1, le=100)] = 50
) -> TaskPage:
    statement = select(Task).where(Task.project_id == project_id).order_by(Task.id)
    tasks = list(await session.scalars(statement.limit(limit + 1)))
    cursor = None
    if len(tasks) > limit:
        tasks = tasks[:limit]
        cursor = encode_cursor(CURSOR_KEY, "tasks", tasks[-1].id)
    return TaskPage(items=[TaskRead.model_validate(task) for task in tasks], next_cursor=cursor)


@app.post("/api/v1/tasks", status_code=201)
async def create_task(data: TaskCreate, session: AsyncSession) -> TaskRead:
    project = await session.get(Project, data.project_id)
    if project is None:
        raise HTTPException(404, "Project not found")
    now = datetime.now(UTC)
    task = Task(
        **data.model_dump(),
        status="pending",
        version=1,
        attempts=0,
        max_attempts=project.max_attempts,
        created_at=now,
        updated_at=now,
        run_after=now,
    )
    session.add(task)
    await session.flush()
    await session.refresh(task, ["project", "assignee"])
    return TaskRead.model_validate(task)


@app.patch("/api/v1/tasks/{task_id}")
async def update_task(task_id: int, data: TaskUpdate, session: AsyncSession) -> TaskRead:
    task = await session.get(Task, task_id)
    if task is None:
        raise HTTPException(404, "Task not found")
    for field, value in data.model_dump(exclude_unset=True).items():
        setattr(task, field, value)
    if ends_lease(task.status):
        task.lease_expires_at = None
    task.version += 1
    task.updated_at = datetime.now(UTC)
    await session.flush()
    return TaskRead.model_validate(task)
