"""Workers: the agents or people that execute a project's tasks."""

from datetime import datetime

from sqlmodel import Column, Field, String

from taskyard.tables import TableModel
from taskyard.timestamps import UTCDateTime, utc_now


class Worker(TableModel, table=True):
    __tablename__ = "workers"

    id: int | None = Field(default=None, primary_key=True)
    project_id: int = Field(foreign_key="projects.id", ondelete="CASCADE", index=True)
    name: str = Field(sa_column=Column(String(200), nullable=False))
    created_at: datetime = Field(
        default_factory=utc_now, sa_column=Column(UTCDateTime(), nullable=False)
    )
    updated_at: datetime = Field(
        default_factory=utc_now, sa_column=Column(UTCDateTime(), nullable=False)
    )
