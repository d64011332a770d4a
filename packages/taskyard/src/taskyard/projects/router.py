"""``/projects``: projects and their members."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Response, status

from sessionwise.fastapi import DatabaseDep, ReadSessionDep, SessionDep
from sessionwise.fastapi.idempotency import IdempotencyDep
from taskyard.api_types import Page, ResourceId
from taskyard.auth import CurrentReader, CurrentUser
from taskyard.idempotency import idempotent
from taskyard.pagination import PageRequest, page_request
from taskyard.problems import problem_responses
from taskyard.projects.schemas import (
    MemberRead,
    MemberRef,
    ProjectCreate,
    ProjectRead,
    ProjectUpdate,
)
from taskyard.projects.service import ProjectService, project_read
from taskyard.read_your_writes import remember_lost_access

__all__ = ["router"]

router = APIRouter(prefix="/projects", tags=["projects"])
Pages = Annotated[PageRequest, Depends(page_request("projects"))]
OWNER_ONLY = problem_responses(403)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ProjectRead,
    summary="Create a project you own",
    responses=idempotent(201),
)
async def create_project(
    data: ProjectCreate, caller: CurrentUser, session: SessionDep, idempotency: IdempotencyDep
) -> ProjectRead | Response:
    if (replay := await idempotency.replay(session, scope=caller.id)) is not None:
        return replay
    project = project_read(await ProjectService(session).create(data, caller.id))
    return await idempotency.answer(project, status_code=status.HTTP_201_CREATED)


@router.get("", summary="The projects you are a member of")
async def list_projects(
    caller: CurrentReader, session: ReadSessionDep, pages: Pages
) -> Page[ProjectRead]:
    rows = await ProjectService(session).list_visible(caller.id, pages.after_id, pages.limit + 1)
    items, next_cursor = pages.split(rows, lambda project: project.id or 0)
    return Page(items=[project_read(project) for project in items], next_cursor=next_cursor)


@router.get("/{project_id}", summary="One project")
async def read_project(
    project_id: ResourceId, caller: CurrentReader, session: ReadSessionDep
) -> ProjectRead:
    return project_read(await ProjectService(session).get(project_id, caller.id))


@router.patch(
    "/{project_id}", summary="Rename or describe a project (owner only)", responses=OWNER_ONLY
)
async def update_project(
    project_id: ResourceId, data: ProjectUpdate, caller: CurrentUser, session: SessionDep
) -> ProjectRead:
    return project_read(await ProjectService(session).update(project_id, data, caller.id))


@router.delete(
    "/{project_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a project with its workers and tasks (owner only)",
    responses=OWNER_ONLY,
)
async def delete_project(
    project_id: ResourceId, caller: CurrentUser, session: SessionDep
) -> Response:
    await ProjectService(session).delete(project_id, caller.id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


MemberBody = Annotated[
    MemberRef,
    Body(description="Exactly one of `user_id` or `email`."),
]


@router.post(
    "/{project_id}/members",
    status_code=status.HTTP_201_CREATED,
    summary="Add a member (owner only)",
    responses=problem_responses(403, 409),
)
async def add_member(
    project_id: ResourceId, member: MemberBody, caller: CurrentUser, session: SessionDep
) -> MemberRead:
    return await ProjectService(session).add_member(project_id, member, caller.id)


@router.delete(
    "/{project_id}/members",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove a member (the owner removes anyone else; a member may leave)",
    responses=problem_responses(403, 409),
)
async def remove_member(
    project_id: ResourceId,
    member: MemberBody,
    caller: CurrentUser,
    session: SessionDep,
    db: DatabaseDep,
) -> Response:
    removed = await ProjectService(session).remove_member(project_id, member, caller.id)
    if db.replicated:  # the removed user's reads must not see the membership on a replica
        remember_lost_access(db, session, removed)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
