"""The library contract on sessionwise, exactly as its README and examples teach.

One `Database` built at import (it opens nothing), ``FastAPI(lifespan=db.lifespan)``, plain
SQLAlchemy 2.0 models, ``SessionDep`` for writes (committed before the response is sent; the
endpoint only ``flush()``es) and ``ReadSessionDep`` for reads (a ``READ ONLY`` session, the
default ``read_sessions``), everything else at its defaults, as in
``examples/migrating/app.py``. The embedded project and assignee are many-to-one
relationships loaded with ``lazy="joined"`` (one statement, SQLAlchemy's advice for
many-to-one), like the fastapi-sqla and advanced-alchemy apps.
"""

from __future__ import annotations

import os
import secrets
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Query
from sqlalchemy import JSON, DateTime, ForeignKey, String, Text, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from bench.apps.library.schemas import TaskCreate, TaskPage, TaskRead, TaskUpdate, ends_lease
from bench.apps.pagination import encode_cursor
from sessionwise import Database
from sessionwise.fastapi import ReadSessionDep, SessionDep

DATABASE_URL = os.environ.get(
    "BENCH_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/bench_sessionwise"
)
CURSOR_KEY = secrets.token_bytes(32)


class Base(DeclarativeBase):
    pass


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    max_attempts: Mapped[int]


class Worker(Base):
    __tablename__ = "workers"

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    name: Mapped[str] = mapped_column(String(200))


class Task(Base):
    __tablename__ = "tasks"

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="pending")
    priority: Mapped[int] = mapped_column(default=0)
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("workers.id"))
    version: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    payload: Mapped[Any] = mapped_column(JSON(none_as_null=True))
    result: Mapped[Any] = mapped_column(JSON(none_as_null=True))
    attempts: Mapped[int] = mapped_column(default=0)
    max_attempts: Mapped[int]
    run_after: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)

    project: Mapped[Project] = relationship(lazy="joined")
    assignee: Mapped[Worker | None] = relationship(lazy="joined")


db = Database(DATABASE_URL)  # opens nothing yet
app = FastAPI(lifespan=db.lifespan)


@app.get("/health/ready")
async def ready(session: ReadSessionDep) -> dict[str, str]:
    await session.execute(select(1))
    return {"status": "ready"}


@app.get("/api/v1/tasks/{task_id}")
async def read_task(task_id: int, session: ReadSessionDep) -> TaskRead:
    task = await session.get(Task, task_id)
    if task is None:
        raise HTTPException(404, "Task not found")
    return TaskRead.model_validate(task)


@app.get("/api/v1/tasks")
async def read_tasks(
    project_id: int, session: ReadSessionDep, limit: Annotated[int, Query(ge=1, le=100)] = 50
) -> TaskPage:
    statement = select(Task).where(Task.project_id == project_id).order_by(Task.id)
    tasks = list(await session.scalars(statement.limit(limit + 1)))
    cursor = None
    if len(tasks) > limit:
        tasks = tasks[:limit]
        cursor = encode_cursor(CURSOR_KEY, "tasks", tasks[-1].id)
    return TaskPage(items=[TaskRead.model_validate(task) for task in tasks], next_cursor=cursor)


@app.post("/api/v1/tasks", status_code=201)
async def create_task(data: TaskCreate, session: SessionDep) -> TaskRead:
    project = await session.get(Project, data.project_id)
    if project is None:
        raise HTTPException(404, "Project not found")
    now = datetime.now(UTC)
    task = Task(
        **data.model_dump(),
        max_attempts=project.max_attempts,
        created_at=now,
        updated_at=now,
        run_after=now,
    )
    session.add(task)
    await session.flush()  # the id now; the commit runs before the 201 is sent
    await session.refresh(task, ["project", "assignee"])  # awaited, not lazy IO
    return TaskRead.model_validate(task)


@app.patch("/api/v1/tasks/{task_id}")
async def update_task(task_id: int, data: TaskUpdate, session: SessionDep) -> TaskRead:
    task = await session.get(Task, task_id)
    if task is None:
        raise HTTPException(404, "Task not found")
    for field, value in data.model_dump(exclude_unset=True).items():
        setattr(task, field, value)
    if ends_lease(task.status):
        task.lease_expires_at = None
    task.version += 1
    task.updated_at = datetime.now(UTC)
    await session.flush()  # no commit, no refresh: the dependency commits before the answer
    return TaskRead.model_validate(task)
