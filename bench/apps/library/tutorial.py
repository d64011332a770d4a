"""The tutorial pattern on the library contract: `bench.apps.tutorial` without its auth.

The engine, the SQLModel tables, ``get_db`` (commit after the endpoint, so after the response
is sent), ``commit()`` + ``refresh()`` in writes, ``lazy="selectin"`` relationships and
``response_model`` are `bench.apps.tutorial`'s, imported as they are; only the bearer-key and
membership dependencies, which the articles do not have, are left out.
"""

# No `from __future__ import annotations`: FastAPI reads the annotations at route creation.

from fastapi import Depends, FastAPI, HTTPException, Query
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bench.apps.pagination import encode_cursor
from bench.apps.tutorial import (
    CURSOR_KEY,
    Project,
    Task,
    TaskCreate,
    TaskPage,
    TaskRead,
    TaskUpdate,
    _utc_now,
    get_db,
)

app = FastAPI()


@app.get("/health/ready")
async def ready(db: AsyncSession = Depends(get_db)) -> dict[str, str]:  # noqa: B008
    await db.exec(select(1))
    return {"status": "ready"}


@app.get("/api/v1/tasks/{task_id}", response_model=TaskRead)
async def read_task(task_id: int, db: AsyncSession = Depends(get_db)) -> Task:  # noqa: B008
    task = await db.get(Task, task_id)
    if task is None:
        raise HTTPException(status_code=404, detail="Task not found")
    return task


@app.get("/api/v1/tasks", response_model=TaskPage)
async def read_tasks(
    project_id: int,
    limit: int = Query(default=50, ge=1, le=100),
    db: AsyncSession = Depends(get_db),  # noqa: B008
) -> TaskPage:
    statement = (
        select(Task).where(Task.project_id == project_id).order_by(col(Task.id)).limit(limit + 1)
    )
    tasks = list((await db.exec(statement)).all())
    cursor = None
    if len(tasks) > limit:
        tasks = tasks[:limit]
        assert tasks[-1].id is not None
        cursor = encode_cursor(CURSOR_KEY, "tasks", tasks[-1].id)
    return TaskPage(items=[TaskRead.model_validate(task) for task in tasks], next_cursor=cursor)


@app.post("/api/v1/tasks", response_model=TaskRead, status_code=201)
async def create_task(data: TaskCreate, db: AsyncSession = Depends(get_db)) -> Task:  # noqa: B008
    project = await db.get(Project, data.project_id)
    if project is None:
        raise HTTPException(status_code=404, detail="Project not found")
    new_task = Task(**data.model_dump(), max_attempts=project.max_attempts)
    db.add(new_task)
    await db.commit()
    await db.refresh(new_task)
    return new_task


@app.patch("/api/v1/tasks/{task_id}", response_model=TaskRead)
async def update_task(
    task_id: int,
    data: TaskUpdate,
    db: AsyncSession = Depends(get_db),  # noqa: B008
) -> Task:
    task = await db.get(Task, task_id)
    if task is None:
        raise HTTPException(status_code=404, detail="Task not found")
    for field, value in data.model_dump(exclude_unset=True).items():
        setattr(task, field, value)
    if task.status != "in_progress":
        task.lease_expires_at = None
    task.version += 1
    task.updated_at = _utc_now()
    await db.commit()
    await db.refresh(task)
    return task
