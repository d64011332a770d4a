"""API schemas of tasks and claims."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field

from taskyard.api_types import (
    INTEGRAL,
    Description,
    InputModel,
    Name,
    Omittable,
    Ref,
    ResourceId,
    optional_not_null,
)
from taskyard.tasks.models import TaskStatus

__all__ = [
    "ClaimRequest",
    "HeartbeatRequest",
    "LeaseSeconds",
    "Priority",
    "TaskCreate",
    "TaskRead",
    "TaskUpdate",
    "WaitSeconds",
]

Priority = Annotated[int, Field(ge=-1000, le=1000, description="Higher runs first."), INTEGRAL]
LeaseSeconds = Annotated[
    int,
    Field(ge=1, le=86_400, description="How long the claim holds without a heartbeat."),
    INTEGRAL,
]

WaitSeconds = Annotated[
    int,
    Field(
        ge=0,
        le=30,
        description="When nothing is claimable, wait up to this long for a task to become "
        "claimable (holding no database connection), then answer 204.",
    ),
    INTEGRAL,
]


class TaskCreate(InputModel):
    project_id: ResourceId
    title: Name
    description: Description = ""
    priority: Priority = 0
    assignee_id: ResourceId | None = Field(
        default=None, description="A worker of the project, or null."
    )


class TaskUpdate(InputModel):
    """Only the fields present change. ``assignee_id: null`` unassigns; no other field is
    nullable. Leaving ``in_progress`` ends the lease."""

    title: Omittable[Name] = optional_not_null()
    description: Omittable[Description] = optional_not_null()
    status: Omittable[TaskStatus] = optional_not_null(strict=False)
    priority: Omittable[Priority] = optional_not_null()
    assignee_id: ResourceId | None = None


class ClaimRequest(InputModel):
    worker_id: ResourceId
    project_id: Omittable[ResourceId] = optional_not_null("Optional: must be the worker's project.")
    lease_seconds: LeaseSeconds = 300
    wait_seconds: WaitSeconds = 0


class HeartbeatRequest(InputModel):
    worker_id: ResourceId = Field(description="The worker holding the lease.")
    lease_seconds: LeaseSeconds = 300


class TaskRead(BaseModel):
    id: int
    project_id: int
    title: str
    description: str
    status: TaskStatus
    priority: int
    assignee: Ref | None
    project: Ref
    version: int = Field(description="Increments on every change; the ETag.")
    created_at: datetime
    updated_at: datetime
    lease_expires_at: datetime | None
