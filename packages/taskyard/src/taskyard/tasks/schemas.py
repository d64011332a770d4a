"""API schemas of tasks and claims."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field, field_validator

from taskyard.api_types import Description, InputModel, Name, Ref, ResourceId, optional_not_null
from taskyard.tasks.models import TaskStatus

__all__ = [
    "ClaimRequest",
    "HeartbeatRequest",
    "LeaseSeconds",
    "Priority",
    "TaskCreate",
    "TaskRead",
    "TaskUpdate",
]

Priority = Annotated[int, Field(ge=-1000, le=1000, description="Higher runs first.")]
LeaseSeconds = Annotated[
    int, Field(ge=1, le=86_400, description="How long the claim holds without a heartbeat.")
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

    title: Name | None = optional_not_null()
    description: Description | None = optional_not_null()
    status: TaskStatus | None = optional_not_null(strict=False)
    priority: Priority | None = optional_not_null()
    assignee_id: ResourceId | None = None

    @field_validator("title", "description", "status", "priority", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("may be omitted, but not null")
        return value


class ClaimRequest(InputModel):
    worker_id: ResourceId
    project_id: ResourceId | None = optional_not_null("Optional: must be the worker's project.")
    lease_seconds: LeaseSeconds = 300


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
