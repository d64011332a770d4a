"""The web side: one session per request, committed before the response is sent.

Run: ``TASKS_DB_URL=sqlite+aiosqlite:///./tasks.db uv run uvicorn examples.migrating.app:app``
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from examples.migrating.database import db
from examples.migrating.models import Base, Task
from examples.migrating.schemas import TaskCreate, TaskOut, TaskWithAssignee, WorkerOut
from sessionwise.fastapi import ReadSessionDep, SessionDep


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with db.lifespan(app):  # builds the engine; disposes of it on shutdown
        async with db.engine.begin() as connection:  # demo only: real apps use migrations
            await connection.run_sync(Base.metadata.create_all)
        yield


app = FastAPI(lifespan=lifespan)


@app.post("/tasks", status_code=201)
async def create_task(data: TaskCreate, session: SessionDep) -> TaskOut:
    task = Task(**data.model_dump())
    session.add(task)
    await session.flush()  # the id now; the commit runs before the 201 is sent
    return TaskOut.model_validate(task)


@app.get("/tasks")
async def read_tasks(session: ReadSessionDep, skip: int = 0, limit: int = 10) -> list[TaskOut]:
    tasks = await session.scalars(select(Task).order_by(Task.id).offset(skip).limit(limit))
    return [TaskOut.model_validate(task) for task in tasks]


@app.get("/tasks/{task_id}")
async def read_task(task_id: int, session: ReadSessionDep) -> TaskWithAssignee:
    statement = select(Task).options(selectinload(Task.assignee)).where(Task.id == task_id)
    task = (await session.execute(statement)).scalar_one_or_none()
    if task is None:
        raise HTTPException(404, "Task not found")
    return TaskWithAssignee.model_validate(task)  # the assignee is loaded: no lazy IO here


@app.get("/tasks/{task_id}/assignee")
async def read_assignee(task_id: int, session: ReadSessionDep) -> WorkerOut | None:
    task = await session.get(Task, task_id)
    if task is None:
        raise HTTPException(404, "Task not found")
    assignee = await task.awaitable_attrs.assignee  # an awaited lazy load (AsyncAttrs)
    return None if assignee is None else WorkerOut.model_validate(assignee)


@app.patch("/tasks/{task_id}")
async def update_task(task_id: int, completed: bool, session: SessionDep) -> TaskOut:
    task = await session.get(Task, task_id)
    if task is None:
        raise HTTPException(404, "Task not found")
    task.is_completed = completed
    await session.flush()  # no commit, no refresh: the dependency commits before the answer
    return TaskOut.model_validate(task)
