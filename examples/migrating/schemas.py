"""API schemas, apart from the tables."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class TaskCreate(BaseModel):
    title: str = Field(max_length=50)
    description: str | None = Field(default=None, max_length=255)
    assignee_id: int | None = None


class TaskOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    title: str
    description: str | None
    is_completed: bool
    assignee_id: int | None


class WorkerOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str


class TaskWithAssignee(TaskOut):
    assignee: WorkerOut | None
