"""Projects and their members."""

import enum
from datetime import datetime
from typing import TYPE_CHECKING

from sqlmodel import Column, Enum, Field, Integer, Relationship, String, Text

from taskyard.tables import TableModel, enum_values
from taskyard.timestamps import UTCDateTime, utc_now

if TYPE_CHECKING:
    from taskyard.users.models import User


DEFAULT_MAX_ATTEMPTS = 3
"""How many attempts a task gets when neither it nor its project says otherwise."""


class Role(enum.StrEnum):
    OWNER = "owner"
    MEMBER = "member"


class Project(TableModel, table=True):
    __tablename__ = "projects"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(sa_column=Column(String(200), nullable=False))
    description: str = Field(default="", sa_column=Column(Text(), nullable=False))
    owner_id: int = Field(foreign_key="users.id", ondelete="CASCADE", index=True)
    # The max_attempts of the project's new tasks that do not give their own.
    max_attempts: int = Field(
        default=DEFAULT_MAX_ATTEMPTS,
        sa_column=Column(Integer, nullable=False, server_default=str(DEFAULT_MAX_ATTEMPTS)),
    )
    created_at: datetime = Field(
        default_factory=utc_now, sa_column=Column(UTCDateTime(), nullable=False)
    )
    updated_at: datetime = Field(
        default_factory=utc_now, sa_column=Column(UTCDateTime(), nullable=False)
    )

    members: list["ProjectMember"] = Relationship(
        sa_relationship_kwargs={"lazy": "raise", "order_by": "ProjectMember.user_id"},
        passive_deletes="all",
    )


class ProjectMember(TableModel, table=True):
    """Membership: everything of a project is visible to its members only."""

    __tablename__ = "project_members"

    project_id: int = Field(foreign_key="projects.id", ondelete="CASCADE", primary_key=True)
    # Indexed: every authorization check looks up "the projects of this user".
    user_id: int = Field(foreign_key="users.id", ondelete="CASCADE", primary_key=True, index=True)
    role: Role = Field(
        default=Role.MEMBER,
        sa_column=Column(
            Enum(
                Role,
                name="project_role",
                native_enum=False,
                length=16,
                values_callable=enum_values,
            ),
            nullable=False,
        ),
    )
    created_at: datetime = Field(
        default_factory=utc_now, sa_column=Column(UTCDateTime(), nullable=False)
    )

    user: "User" = Relationship(sa_relationship_kwargs={"lazy": "raise"})
