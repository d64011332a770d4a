"""Project rules: members see a project, only its owner changes it or its members."""

from __future__ import annotations

from sessionwise import Session
from taskyard.errors import ProblemError, ProblemKind, unknown_reference
from taskyard.projects.models import Project, ProjectMember, Role
from taskyard.projects.repository import ProjectRepository
from taskyard.projects.schemas import (
    MemberRead,
    MemberRef,
    ProjectCreate,
    ProjectRead,
    ProjectUpdate,
)
from taskyard.timestamps import utc_now
from taskyard.users.models import User
from taskyard.users.repository import UserRepository

__all__ = ["ProjectService", "project_not_found", "project_read"]


def project_not_found(project_id: int) -> ProblemError:
    # The same answer for "missing" and "not yours": no probing for other teams' projects.
    return ProblemError(ProblemKind.NOT_FOUND, f"project {project_id} not found")


def project_read(project: Project) -> ProjectRead:
    """The API view of a project whose members (with their users) are loaded."""
    assert project.id is not None
    return ProjectRead(
        id=project.id,
        name=project.name,
        description=project.description,
        owner_id=project.owner_id,
        max_attempts=project.max_attempts,
        created_at=project.created_at,
        updated_at=project.updated_at,
        members=[member_read(member) for member in project.members],
    )


def member_read(member: ProjectMember, user: User | None = None) -> MemberRead:
    user = user or member.user
    return MemberRead(user_id=member.user_id, name=user.name, role=Role(member.role))


class ProjectService:
    def __init__(self, session: Session) -> None:
        self.projects = ProjectRepository(session)
        self.users = UserRepository(session)

    async def create(self, data: ProjectCreate, owner_id: int) -> Project:
        now = utc_now()
        project = Project(
            name=data.name,
            description=data.description,
            owner_id=owner_id,
            max_attempts=data.max_attempts,
            created_at=now,
            updated_at=now,
        )
        await self.projects.add(project, owner_id)
        return await self.get(_id(project), owner_id)

    async def get(self, project_id: int, user_id: int) -> Project:
        found = await self.projects.visible(project_id, user_id, with_members=True)
        if found is None:
            raise project_not_found(project_id)
        return found[0]

    async def list_visible(self, user_id: int, after_id: int | None, limit: int) -> list[Project]:
        return await self.projects.list_visible(user_id, after_id, limit)

    async def _owned(self, project_id: int, user_id: int) -> Project:
        found = await self.projects.visible(project_id, user_id)
        if found is None:
            raise project_not_found(project_id)
        project, role = found
        if role is not Role.OWNER:
            raise ProblemError(
                ProblemKind.FORBIDDEN, f"only the owner of project {project_id} may do this"
            )
        return project

    async def update(self, project_id: int, data: ProjectUpdate, user_id: int) -> Project:
        project = await self._owned(project_id, user_id)
        changes = data.model_dump(exclude_unset=True)
        if changes:
            for field, value in changes.items():
                setattr(project, field, value)
            project.updated_at = utc_now()
            await self.projects.session.flush()
        return await self.get(project_id, user_id)

    async def delete(self, project_id: int, user_id: int) -> None:
        await self._owned(project_id, user_id)
        await self.projects.delete(project_id)

    async def _user_for(self, ref: MemberRef) -> User:
        if ref.user_id is not None:
            user = await self.users.by_id(ref.user_id)
            field, value = "user_id", str(ref.user_id)
        else:
            assert ref.email is not None
            user = await self.users.by_email(ref.email)
            field, value = "email", ref.email
        if user is None:
            raise unknown_reference(field, f"no user {value}")
        return user

    async def add_member(self, project_id: int, ref: MemberRef, user_id: int) -> MemberRead:
        await self._owned(project_id, user_id)
        user = await self._user_for(ref)
        if await self.projects.member(project_id, _id(user)) is not None:
            raise ProblemError(ProblemKind.CONFLICT, f"user {user.id} is already a member")
        member = await self.projects.add_member(
            ProjectMember(project_id=project_id, user_id=_id(user), role=Role.MEMBER)
        )
        return member_read(member, user)

    async def remove_member(self, project_id: int, ref: MemberRef, user_id: int) -> None:
        """The owner removes anyone but themselves; a member may remove (only) themselves."""
        found = await self.projects.visible(project_id, user_id)
        if found is None:
            raise project_not_found(project_id)
        user = await self._user_for(ref)
        if found[1] is not Role.OWNER and user.id != user_id:
            raise ProblemError(ProblemKind.FORBIDDEN, "only the owner may remove other members")
        member = await self.projects.member(project_id, _id(user))
        if member is None:
            raise ProblemError(ProblemKind.NOT_FOUND, f"user {user.id} is not a member")
        if member.role == Role.OWNER:
            raise ProblemError(ProblemKind.CONFLICT, "the owner cannot be removed")
        await self.projects.remove_member(member)


def _id(row: Project | User) -> int:
    assert row.id is not None
    return row.id
