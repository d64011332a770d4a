"""Queries on projects and memberships. Visibility is part of every query."""

from __future__ import annotations

from sqlalchemy import BindParameter, bindparam
from sqlalchemy.orm import selectinload
from sqlmodel import col, delete, select
from sqlmodel.sql.expression import SelectOfScalar

from sessionwise import Session
from taskyard.projects.models import Project, ProjectMember, Role

__all__ = ["ProjectRepository", "member_project_ids"]


def member_project_ids(user_id: int | BindParameter[int]) -> SelectOfScalar[int]:
    """A subquery: the ids of the projects *user_id* (a value or a bound parameter) is in."""
    return select(ProjectMember.project_id).where(ProjectMember.user_id == user_id)


_WITH_MEMBERS = selectinload(Project.members).joinedload(ProjectMember.user)  # type: ignore[arg-type]


# Per task write (the project a new task goes into): built once, values bound.
_NAME_IF_MEMBER = (
    select(Project.name)
    .join(ProjectMember, col(ProjectMember.project_id) == col(Project.id))
    .where(Project.id == bindparam("project_id"), ProjectMember.user_id == bindparam("user_id"))
)


class ProjectRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    async def name_if_member(self, project_id: int, user_id: int) -> str | None:
        """The project's name if *user_id* is a member of it, else None."""
        params = {"project_id": project_id, "user_id": user_id}
        return (await self.session.exec(_NAME_IF_MEMBER, params=params)).first()

    async def visible(
        self, project_id: int, user_id: int, *, with_members: bool = False
    ) -> tuple[Project, Role] | None:
        """The project and the caller's role in it, or None when not a member (or missing)."""
        statement = (
            select(Project, ProjectMember.role)
            .join(ProjectMember, col(ProjectMember.project_id) == col(Project.id))
            .where(Project.id == project_id, ProjectMember.user_id == user_id)
        )
        if with_members:
            statement = statement.options(_WITH_MEMBERS).execution_options(populate_existing=True)
        row = (await self.session.exec(statement)).first()
        return None if row is None else (row[0], Role(row[1]))

    async def list_visible(self, user_id: int, after_id: int | None, limit: int) -> list[Project]:
        statement = (
            select(Project)
            .where(col(Project.id).in_(member_project_ids(user_id)))
            .options(_WITH_MEMBERS)
            .order_by(col(Project.id))
            .limit(limit)
        )
        if after_id is not None:
            statement = statement.where(col(Project.id) > after_id)
        return list(await self.session.exec(statement))

    async def add(self, project: Project, owner_id: int) -> Project:
        self.session.add(project)
        await self.session.flush()
        assert project.id is not None
        self.session.add(ProjectMember(project_id=project.id, user_id=owner_id, role=Role.OWNER))
        await self.session.flush()
        return project

    async def member(self, project_id: int, user_id: int) -> ProjectMember | None:
        return await self.session.get(ProjectMember, (project_id, user_id))

    async def add_member(self, member: ProjectMember) -> ProjectMember:
        self.session.add(member)
        await self.session.flush()
        return member

    async def remove_member(self, member: ProjectMember) -> None:
        await self.session.delete(member)
        await self.session.flush()

    async def delete(self, project_id: int) -> None:
        # Workers, tasks and memberships go with it: ON DELETE CASCADE in the schema.
        await self.session.exec(delete(Project).where(col(Project.id) == project_id))
