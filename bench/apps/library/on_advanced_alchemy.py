"""The library contract on advanced-alchemy 1.12, as its FastAPI docs teach.

``AdvancedAlchemy(config=SQLAlchemyAsyncConfig(...), app=app)`` with
``commit_mode="autocommit"`` and ``AsyncSessionConfig(expire_on_commit=False)``, models on
``base.BigIntAuditBase`` (its ``created_at``/``updated_at`` audit columns are taskyard's),
a ``SQLAlchemyAsyncRepositoryService`` with its repository, provided per request by
``alchemy.provide_service``, and the service's ``get_one_or_none``, ``get_many``, ``create``,
``update`` and ``to_schema``. The embedded project and assignee are relationships with
``lazy="joined"``, as in the other ORM apps; engine options at their defaults.

Runs on the interpreter of ``bench/.peers-venv`` (`bench.peers`).
"""

# No `from __future__ import annotations`: FastAPI reads the annotations at route creation.

import os
import secrets
from datetime import UTC, datetime
from typing import Annotated, Any

from advanced_alchemy.extensions.fastapi import (
    AdvancedAlchemy,
    AsyncSessionConfig,
    SQLAlchemyAsyncConfig,
    base,
    filters,
    repository,
    service,
)
from fastapi import Depends, FastAPI, HTTPException, Query
from sqlalchemy import JSON, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from bench.apps.library.schemas import TaskCreate, TaskPage, TaskRead, TaskUpdate, ends_lease
from bench.apps.pagination import encode_cursor

DATABASE_URL = os.environ.get(
    "BENCH_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/bench_advanced_alchemy"
)
CURSOR_KEY = secrets.token_bytes(32)


class ProjectModel(base.BigIntAuditBase):
    __tablename__ = "projects"

    name: Mapped[str] = mapped_column(String(200))
    max_attempts: Mapped[int]


class WorkerModel(base.BigIntAuditBase):
    __tablename__ = "workers"

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    name: Mapped[str] = mapped_column(String(200))


class TaskModel(base.BigIntAuditBase):
    __tablename__ = "tasks"

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="pending")
    priority: Mapped[int] = mapped_column(default=0)
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("workers.id"))
    version: Mapped[int] = mapped_column(default=1)
    lease_expires_at: Mapped[datetime | None]
    payload: Mapped[Any] = mapped_column(JSON(none_as_null=True))
    result: Mapped[Any] = mapped_column(JSON(none_as_null=True))
    attempts: Mapped[int] = mapped_column(default=0)
    max_attempts: Mapped[int]
    run_after: Mapped[datetime]
    claimed_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)

    project: Mapped[ProjectModel] = relationship(lazy="joined")
    assignee: Mapped[WorkerModel | None] = relationship(lazy="joined")


class TaskService(service.SQLAlchemyAsyncRepositoryService[TaskModel]):
    class Repo(repository.SQLAlchemyAsyncRepository[TaskModel]):
        model_type = TaskModel

    repository_type = Repo


sqlalchemy_config = SQLAlchemyAsyncConfig(
    connection_string=DATABASE_URL,
    session_config=AsyncSessionConfig(expire_on_commit=False),
    commit_mode="autocommit",
)
app = FastAPI()
alchemy = AdvancedAlchemy(config=sqlalchemy_config, app=app)

Tasks = Annotated[TaskService, Depends(alchemy.provide_service(TaskService))]


@app.get("/health/ready")
async def ready(tasks: Tasks) -> dict[str, str]:
    await tasks.count()
    return {"status": "ready"}


@app.get("/api/v1/tasks/{task_id}")
async def read_task(task_id: int, tasks: Tasks) -> TaskRead:
    task = await tasks.get_one_or_none(id=task_id)
    if task is None:
        raise HTTPException(404, "Task not found")
    return tasks.to_schema(task, schema_type=TaskRead)


@app.get("/api/v1/tasks")
async def read_tasks(
    project_id: int, tasks: Tasks, limit: Annotated[int, Query(ge=1, le=100)] = 50
) -> TaskPage:
    found = list(
        await tasks.get_many(
            filters.OrderBy(field_name="id", sort_order="asc"),
            filters.LimitOffset(limit=limit + 1, offset=0),
            project_id=project_id,
        )
    )
    cursor = None
    if len(found) > limit:
        found = found[:limit]
        cursor = encode_cursor(CURSOR_KEY, "tasks", found[-1].id)
    items = [tasks.to_schema(task, schema_type=TaskRead) for task in found]
    return TaskPage(items=items, next_cursor=cursor)


@app.post("/api/v1/tasks", status_code=201)
async def create_task(data: TaskCreate, tasks: Tasks) -> TaskRead:
    project = await tasks.repository.session.get(ProjectModel, data.project_id)
    if project is None:
        raise HTTPException(404, "Project not found")
    values = {**data.model_dump(), "max_attempts": project.max_attempts}
    task = await tasks.create({**values, "run_after": datetime.now(UTC)})
    return tasks.to_schema(task, schema_type=TaskRead)


@app.patch("/api/v1/tasks/{task_id}")
async def update_task(task_id: int, data: TaskUpdate, tasks: Tasks) -> TaskRead:
    task = await tasks.get_one_or_none(id=task_id)
    if task is None:
        raise HTTPException(404, "Task not found")
    for field, value in data.model_dump(exclude_unset=True).items():
        setattr(task, field, value)
    if ends_lease(task.status):
        task.lease_expires_at = None
    task.version += 1
    task = await tasks.update(task)  # updated_at: the audit column's onupdate
    return tasks.to_schema(task, schema_type=TaskRead)
