"""The four task calls written the way the tutorial articles teach (../shared/seeds/).

Reproduced on purpose, warts included, because this is the pattern taskyard is compared with:

* the engine is created at import time with ``pool_pre_ping=True, pool_size=5`` ("Complete
  Session Configuration", article 000) and an ``async_sessionmaker(expire_on_commit=False)``;
* ``get_db`` is a ``yield`` dependency that commits after the endpoint (articles 001, 003),
  with FastAPI's default dependency scope, so the commit runs after the response is sent;
* writes do ``await session.commit(); await session.refresh(obj)`` (article 004);
* relationships load with ``lazy="selectin"`` to avoid MissingGreenlet (article 000,
  "Load relationships upfront"), and responses go through ``response_model``.

To compare like with like, it authenticates the same bearer key (an ``HTTPBearer``
dependency with one indexed lookup in the request's session) and checks project membership,
as taskyard does. Tables are taskyard's, mapped with SQLModel here.
"""

# No `from __future__ import annotations`: SQLModel reads the annotations at class creation.

import hashlib
import hmac
import os
import secrets
from collections.abc import AsyncGenerator
from datetime import UTC, datetime
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Query
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict
from pydantic import Field as PydanticField
from sqlalchemy import JSON, Column, DateTime, String, Text
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlmodel import Field, Relationship, SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bench.apps.keys import key_id_of
from bench.apps.pagination import encode_cursor

DATABASE_URL = os.environ.get(
    "BENCH_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/bench_tutorial"
)
CURSOR_KEY = secrets.token_bytes(32)


# -- database.py ------------------------------------------------------------------------------

engine = create_async_engine(DATABASE_URL, pool_pre_ping=True, pool_size=5)

async_session_factory = async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


async def get_db() -> AsyncGenerator[AsyncSession, None]:
    async with async_session_factory() as session:
        try:
            yield session
            await session.commit()
        except Exception:
            await session.rollback()
            raise


# -- models.py --------------------------------------------------------------------------------


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _timestamp_column(nullable: bool = False) -> Column[datetime]:
    return Column(DateTime(timezone=True), nullable=nullable)


class User(SQLModel, table=True):
    __tablename__ = "users"
    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(sa_column=Column(String(254), nullable=False, unique=True))
    name: str = Field(sa_column=Column(String(200), nullable=False))


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_keys"
    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id")
    key_id: str = Field(sa_column=Column(String(32), nullable=False, unique=True))
    key_hash: str = Field(sa_column=Column(String(64), nullable=False))
    revoked_at: datetime | None = Field(default=None, sa_column=_timestamp_column(True))


class Project(SQLModel, table=True):
    __tablename__ = "projects"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(sa_column=Column(String(200), nullable=False))
    max_attempts: int = 3


class ProjectMember(SQLModel, table=True):
    __tablename__ = "project_members"
    project_id: int = Field(foreign_key="projects.id", primary_key=True)
    user_id: int = Field(foreign_key="users.id", primary_key=True)


class Worker(SQLModel, table=True):
    __tablename__ = "workers"
    id: int | None = Field(default=None, primary_key=True)
    project_id: int = Field(foreign_key="projects.id")
    name: str = Field(sa_column=Column(String(200), nullable=False))


class Task(SQLModel, table=True):
    __tablename__ = "tasks"
    id: int | None = Field(default=None, primary_key=True)
    project_id: int = Field(foreign_key="projects.id")
    title: str = Field(sa_column=Column(String(200), nullable=False))
    description: str = Field(default="", sa_column=Column(Text(), nullable=False))
    status: str = Field(default="pending", sa_column=Column(String(16), nullable=False))
    priority: int = 0
    assignee_id: int | None = Field(default=None, foreign_key="workers.id")
    version: int = 1
    created_at: datetime = Field(default_factory=_utc_now, sa_column=_timestamp_column())
    updated_at: datetime = Field(default_factory=_utc_now, sa_column=_timestamp_column())
    lease_expires_at: datetime | None = Field(default=None, sa_column=_timestamp_column(True))
    payload: Any = Field(default=None, sa_column=Column(JSON(none_as_null=True)))
    result: Any = Field(default=None, sa_column=Column(JSON(none_as_null=True)))
    attempts: int = 0
    max_attempts: int = 3
    run_after: datetime = Field(default_factory=_utc_now, sa_column=_timestamp_column())
    claimed_at: datetime | None = Field(default=None, sa_column=_timestamp_column(True))
    last_error: str | None = Field(default=None, sa_column=Column(Text(), nullable=True))

    project: Project = Relationship(sa_relationship_kwargs={"lazy": "selectin"})
    assignee: Worker | None = Relationship(sa_relationship_kwargs={"lazy": "selectin"})


# -- schemas.py -------------------------------------------------------------------------------

Status = str


class TaskCreate(BaseModel):
    project_id: int
    title: str = PydanticField(min_length=1, max_length=200)
    description: str = ""
    priority: int = 0
    assignee_id: int | None = None


class TaskUpdate(BaseModel):
    status: Status | None = PydanticField(
        default=None, pattern="^(pending|in_progress|done|failed|cancelled)$"
    )
    title: str | None = PydanticField(default=None, min_length=1, max_length=200)
    priority: int | None = None


class Ref(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    name: str


class TaskRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    project_id: int
    title: str
    description: str
    status: Status
    priority: int
    assignee: Ref | None
    project: Ref
    version: int
    created_at: datetime
    updated_at: datetime
    lease_expires_at: datetime | None
    payload: Any
    result: Any
    attempts: int
    max_attempts: int
    run_after: datetime
    claimed_at: datetime | None
    last_error: str | None


class TaskPage(BaseModel):
    items: list[TaskRead]
    next_cursor: str | None


# -- auth.py ----------------------------------------------------------------------------------

bearer = HTTPBearer()


async def get_current_user(
    credentials: HTTPAuthorizationCredentials = Depends(bearer),  # noqa: B008 - the tutorial style
    db: AsyncSession = Depends(get_db),  # noqa: B008
) -> int:
    key_id = key_id_of(credentials.credentials)
    if key_id is not None:
        statement = select(ApiKey).where(
            ApiKey.key_id == key_id,
            ApiKey.revoked_at == None,  # noqa: E711 - the tutorial style; SQLAlchemy makes it IS NULL
        )
        key = (await db.exec(statement)).first()
        digest = hashlib.sha256(credentials.credentials.encode()).hexdigest()
        if key is not None and hmac.compare_digest(key.key_hash, digest):
            return key.user_id
    raise HTTPException(status_code=401, detail="Invalid API key")


async def require_member(db: AsyncSession, project_id: int, user_id: int) -> None:
    if await db.get(ProjectMember, (project_id, user_id)) is None:
        raise HTTPException(status_code=404, detail="Project not found")


# -- main.py ----------------------------------------------------------------------------------

app = FastAPI()


@app.get("/health/ready")
async def ready(db: AsyncSession = Depends(get_db)) -> dict[str, str]:  # noqa: B008
    await db.exec(select(1))
    return {"status": "ready"}


@app.get("/api/v1/tasks/{task_id}", response_model=TaskRead)
async def read_task(
    task_id: int,
    user_id: int = Depends(get_current_user),
    db: AsyncSession = Depends(get_db),  # noqa: B008
) -> Task:
    task = await db.get(Task, task_id)
    if task is None:
        raise HTTPException(status_code=404, detail="Task not found")
    await require_member(db, task.project_id, user_id)
    return task


@app.get("/api/v1/tasks", response_model=TaskPage)
async def read_tasks(
    project_id: int,
    limit: int = Query(default=50, ge=1, le=100),
    user_id: int = Depends(get_current_user),
    db: AsyncSession = Depends(get_db),  # noqa: B008
) -> TaskPage:
    await require_member(db, project_id, user_id)
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
async def create_task(
    data: TaskCreate,
    user_id: int = Depends(get_current_user),
    db: AsyncSession = Depends(get_db),  # noqa: B008
) -> Task:
    await require_member(db, data.project_id, user_id)
    if data.assignee_id is not None:
        worker = await db.get(Worker, data.assignee_id)
        if worker is None or worker.project_id != data.project_id:
            raise HTTPException(status_code=422, detail="Unknown assignee")
    project = await db.get(Project, data.project_id)
    assert project is not None  # require_member found it
    new_task = Task(**data.model_dump(), max_attempts=project.max_attempts)
    db.add(new_task)
    await db.commit()
    await db.refresh(new_task)
    return new_task


@app.patch("/api/v1/tasks/{task_id}", response_model=TaskRead)
async def update_task(
    task_id: int,
    data: TaskUpdate,
    user_id: int = Depends(get_current_user),
    db: AsyncSession = Depends(get_db),  # noqa: B008
) -> Task:
    task = await db.get(Task, task_id)
    if task is None:
        raise HTTPException(status_code=404, detail="Task not found")
    await require_member(db, task.project_id, user_id)
    for field, value in data.model_dump(exclude_unset=True).items():
        setattr(task, field, value)
    if task.status != "in_progress":
        task.lease_expires_at = None
    task.version += 1
    task.updated_at = _utc_now()
    await db.commit()
    await db.refresh(task)
    return task
