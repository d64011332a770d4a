"""API schemas of tasks, claims, completions and failures."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BaseModel, Field, JsonValue, model_validator

from taskyard.api_types import (
    INTEGRAL,
    Description,
    InputModel,
    MaxAttempts,
    Name,
    Omittable,
    Ref,
    ResourceId,
    optional_not_null,
    storable_text,
)
from taskyard.tasks.models import AttemptOutcome, TaskStatus

__all__ = [
    "MAX_JSON_BYTES",
    "AttemptRead",
    "ClaimRequest",
    "ClaimedTasks",
    "CompleteManyRequest",
    "CompleteRequest",
    "Completion",
    "FailRequest",
    "HeartbeatRequest",
    "LeaseSeconds",
    "Priority",
    "TaskCreate",
    "TaskRead",
    "TaskUpdate",
]

MAX_JSON_BYTES = 64 * 1024
"""The largest payload or result, as compact JSON (UTF-8)."""


def _bounded_json(value: JsonValue) -> JsonValue:
    # Python's JSON parser takes NaN, Infinity and 1e400 (inf), which no JSON column or
    # client can: refused here (allow_nan=False), as are lone surrogates, which cannot be
    # encoded as UTF-8 (and so neither stored by PostgreSQL nor sent back).
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except ValueError:
        raise ValueError("numbers must be finite (no NaN or Infinity)") from None
    try:
        size = len(text.encode())
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (no lone surrogates)") from None
    if size > MAX_JSON_BYTES:
        raise ValueError(f"larger than {MAX_JSON_BYTES} bytes as JSON ({size})")
    return value


def _json_field(description: str) -> Any:
    return Field(default=None, description=f"{description} At most {MAX_JSON_BYTES} bytes.")


StoredJson = Annotated[JsonValue, AfterValidator(_bounded_json)]
"""Any JSON value (null: none), at most `MAX_JSON_BYTES` bytes."""

Priority = Annotated[int, Field(ge=-1000, le=1000, description="Higher runs first."), INTEGRAL]
LeaseSeconds = Annotated[
    int,
    Field(ge=1, le=86_400, description="How long the claim holds without a heartbeat."),
    INTEGRAL,
]
ClaimLimit = Annotated[
    int, Field(ge=1, le=100, description="Claim up to this many tasks at once."), INTEGRAL
]
ErrorText = Annotated[
    str,
    Field(min_length=1, max_length=10_000, json_schema_extra={"pattern": r"^[^\x00]*$"}),
    AfterValidator(storable_text),
]
# Enum and datetime fields are not strict: FastAPI validates the decoded JSON, where a
# timestamp can only be a string. Aware only: a naive time has no single meaning.
RunAfter = Annotated[
    AwareDatetime,
    Field(strict=False, description="Not claimable before this time (RFC 3339, with offset)."),
]


class TaskCreate(InputModel):
    project_id: ResourceId
    title: Name
    description: Description = ""
    priority: Priority = 0
    assignee_id: ResourceId | None = Field(
        default=None, description="A worker of the project, or null."
    )
    payload: StoredJson = _json_field("The task's input, for its worker; any JSON value.")
    max_attempts: Omittable[MaxAttempts] = optional_not_null("Default: the project's.")
    run_after: Omittable[RunAfter] = optional_not_null("Default: now.", strict=False)


class TaskUpdate(InputModel):
    """Only the fields present change. ``assignee_id: null`` unassigns; no other field is
    nullable. Leaving ``in_progress`` ends the lease."""

    title: Omittable[Name] = optional_not_null()
    description: Omittable[Description] = optional_not_null()
    status: Omittable[TaskStatus] = optional_not_null(strict=False)
    priority: Omittable[Priority] = optional_not_null()
    assignee_id: ResourceId | None = None


class ClaimRequest(InputModel):
    """Without ``limit``: the best task (200) or none (204). With it: ``{"items": [...]}``,
    best first, up to ``limit`` tasks, each with its own lease and version (200, maybe
    empty)."""

    worker_id: ResourceId
    project_id: Omittable[ResourceId] = optional_not_null("Optional: must be the worker's project.")
    lease_seconds: LeaseSeconds = 300
    limit: Omittable[ClaimLimit] = optional_not_null("Claim up to this many tasks at once (1-100).")


class CompleteRequest(InputModel):
    worker_id: ResourceId = Field(description="The worker holding the lease.")
    result: StoredJson = _json_field("What the work produced; any JSON value.")


class Completion(InputModel):
    id: ResourceId = Field(description="A task the worker holds.")
    result: StoredJson = _json_field("What the work produced; any JSON value.")


class CompleteManyRequest(InputModel):
    """Several completions at once: all of them, or (a 404 or 409) none."""

    worker_id: ResourceId = Field(description="The worker holding the leases.")
    items: list[Completion] = Field(min_length=1, max_length=100)

    @model_validator(mode="after")
    def _distinct(self) -> CompleteManyRequest:
        if len({item.id for item in self.items}) != len(self.items):
            raise ValueError("each task at most once")
        return self


class FailRequest(InputModel):
    worker_id: ResourceId = Field(description="The worker holding the lease.")
    error: ErrorText = Field(description="What went wrong; kept with the attempt.")


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
    payload: JsonValue = Field(description="The task's input (null: none).")
    result: JsonValue = Field(description="What its worker produced (null: none yet).")
    attempts: int = Field(description="Attempts started since created or last retried.")
    max_attempts: int
    run_after: datetime = Field(description="When the task is (or became) claimable.")
    claimed_at: datetime | None = Field(description="When the latest attempt began.")
    last_error: str | None = Field(description="The error of the last failed attempt.")


class ClaimedTasks(BaseModel):
    """The answer to a claim with ``limit`` (the tasks claimed, best first, maybe none) and
    to a batch of completions (the tasks completed, in the order given)."""

    items: list[TaskRead]


class AttemptRead(BaseModel):
    """An attempt that failed or whose lease expired."""

    attempt: int = Field(description="Its number since the task was created or last retried.")
    worker: Ref | None = Field(description="Null when the worker has been deleted since.")
    started_at: datetime
    ended_at: datetime
    outcome: AttemptOutcome
    error: str
