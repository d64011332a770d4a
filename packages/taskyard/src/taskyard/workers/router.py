"""``/workers``: the agents or people that execute a project's tasks."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status

from sessionwise.fastapi import ReadSessionDep, SessionDep
from sessionwise.fastapi.idempotency import IdempotencyDep
from taskyard.api_types import Page, ResourceId
from taskyard.auth import CurrentReader, CurrentUser
from taskyard.idempotency import idempotent
from taskyard.pagination import PageRequest, page_request
from taskyard.workers.schemas import WorkerCreate, WorkerRead, WorkerUpdate
from taskyard.workers.service import WorkerService

__all__ = ["router"]

router = APIRouter(prefix="/workers", tags=["workers"])
Pages = Annotated[PageRequest, Depends(page_request("workers"))]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=WorkerRead,
    summary="Register a worker in a project",
    responses=idempotent(201),
)
async def create_worker(
    data: WorkerCreate, caller: CurrentUser, session: SessionDep, idempotency: IdempotencyDep
) -> WorkerRead | Response:
    if (replay := await idempotency.replay(session, scope=caller.id)) is not None:
        return replay
    worker = WorkerRead.model_validate(await WorkerService(session).create(data, caller.id))
    return await idempotency.answer(worker, status_code=status.HTTP_201_CREATED)


@router.get("", summary="Workers of your projects, or of one")
async def list_workers(
    caller: CurrentReader,
    session: ReadSessionDep,
    pages: Pages,
    project_id: Annotated[ResourceId | None, Query()] = None,
) -> Page[WorkerRead]:
    rows = await WorkerService(session).list_visible(
        caller.id, project_id, pages.after_id, pages.limit + 1
    )
    items, next_cursor = pages.split(rows, lambda worker: worker.id or 0)
    return Page(
        items=[WorkerRead.model_validate(worker) for worker in items], next_cursor=next_cursor
    )


@router.get("/{worker_id}", summary="One worker")
async def read_worker(
    worker_id: ResourceId, caller: CurrentReader, session: ReadSessionDep
) -> WorkerRead:
    return WorkerRead.model_validate(await WorkerService(session).get(worker_id, caller.id))


@router.patch("/{worker_id}", summary="Rename a worker")
async def update_worker(
    worker_id: ResourceId, data: WorkerUpdate, caller: CurrentUser, session: SessionDep
) -> WorkerRead:
    return WorkerRead.model_validate(
        await WorkerService(session).update(worker_id, data, caller.id)
    )


@router.delete(
    "/{worker_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove a worker; its tasks stay, unassigned",
)
async def delete_worker(
    worker_id: ResourceId, caller: CurrentUser, session: SessionDep
) -> Response:
    await WorkerService(session).delete(worker_id, caller.id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
