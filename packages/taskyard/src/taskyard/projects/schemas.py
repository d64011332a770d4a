"""API schemas of projects and members."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, model_validator

from taskyard.api_types import (
    Description,
    InputModel,
    MaxAttempts,
    Name,
    Omittable,
    ResourceId,
    optional_not_null,
)
from taskyard.projects.models import DEFAULT_MAX_ATTEMPTS, Role
from taskyard.users.schemas import Email

__all__ = ["MemberRead", "MemberRef", "ProjectCreate", "ProjectRead", "ProjectUpdate"]


class ProjectCreate(InputModel):
    name: Name
    description: Description = ""
    max_attempts: MaxAttempts = Field(
        default=DEFAULT_MAX_ATTEMPTS, description="The default of the project's new tasks."
    )


class ProjectUpdate(InputModel):
    """Only the fields present change; ``null`` is not a value for any of them."""

    name: Omittable[Name] = optional_not_null()
    description: Omittable[Description] = optional_not_null()
    max_attempts: Omittable[MaxAttempts] = optional_not_null("For tasks created from now on.")


class MemberRef(InputModel):
    """Who to add or remove: exactly one of ``user_id`` or ``email``."""

    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [{"required": ["user_id"]}, {"required": ["email"]}],
            "examples": [{"email": "ada@example.com"}, {"user_id": 2}],
        }
    )

    user_id: Omittable[ResourceId] = optional_not_null()
    email: Omittable[Email] = optional_not_null()

    @model_validator(mode="after")
    def _exactly_one(self) -> MemberRef:
        if (self.user_id is None) == (self.email is None):
            raise ValueError("give exactly one of user_id or email")
        return self


class MemberRead(BaseModel):
    user_id: int
    name: str
    role: Role


class ProjectRead(BaseModel):
    id: int
    name: str
    description: str
    owner_id: int
    max_attempts: int = Field(description="The default of the project's new tasks.")
    created_at: datetime
    updated_at: datetime
    members: list[MemberRead] = Field(description="Every member, the owner included.")
