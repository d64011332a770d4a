"""API schemas of workers."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from taskyard.api_types import InputModel, Name, ResourceId

__all__ = ["WorkerCreate", "WorkerRead", "WorkerUpdate"]


class WorkerCreate(InputModel):
    project_id: ResourceId
    name: Name


class WorkerUpdate(InputModel):
    name: Name


class WorkerRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    project_id: int
    name: str
    created_at: datetime
    updated_at: datetime
