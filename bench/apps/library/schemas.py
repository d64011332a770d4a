"""The request and response models every library-section app shares: taskyard's task JSON.

Sharing them keeps the JSON identical by construction; what is measured is how each app gets
from the request to a row and back. pydantic only, so that the peers' environment runs it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Status = Literal["pending", "in_progress", "done", "failed", "cancelled"]


class TaskCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    project_id: int = Field(ge=1, le=2**31 - 1)
    title: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=10_000)
    priority: int = Field(default=0, ge=-1000, le=1000)
    assignee_id: int | None = Field(default=None, ge=1, le=2**31 - 1)


class TaskUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Status | None = None
    title: str | None = Field(default=None, min_length=1, max_length=200)
    priority: int | None = Field(default=None, ge=-1000, le=1000)


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
    status: str
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


def ends_lease(status: str) -> bool:
    """taskyard's rule, kept by every app: leaving ``in_progress`` ends the lease."""
    return status != "in_progress"
