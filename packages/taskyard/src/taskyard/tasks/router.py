"""``/tasks``: the queue, with optimistic concurrency (ETag / If-Match), claims (one task or
a batch), completions, failures and retries."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status

from sessionwise.fastapi import ReadSessionDep, SessionDep
from sessionwise.fastapi.idempotency import IdempotencyDep
from taskyard.api_types import Page, ResourceId
from taskyard.auth import CurrentReader, CurrentUser
from taskyard.etags import IfMatchHeader, etag
from taskyard.idempotency import idempotent
from taskyard.pagination import PageRequest, page_request
from taskyard.problems import problem_responses
from taskyard.tasks.backoff import RetryPolicy
from taskyard.tasks.dependencies import QueueEventsDep
from taskyard.tasks.models import TaskStatus
from taskyard.tasks.repository import TaskFilters
from taskyard.tasks.schemas import (
    AttemptRead,
    ClaimedTasks,
    ClaimRequest,
    CompleteManyRequest,
    CompleteRequest,
    FailRequest,
    HeartbeatRequest,
    TaskCreate,
    TaskRead,
    TaskUpdate,
)
from taskyard.tasks.service import TaskService

__all__ = ["router"]

router = APIRouter(prefix="/tasks", tags=["tasks"])
Pages = Annotated[PageRequest, Depends(page_request("tasks"))]
_ETAG_HEADER = {"ETag": {"description": "The task's version", "schema": {"type": "string"}}}


def _retry_policy(request: Request) -> RetryPolicy:
    policy = request.app.state.retry_policy
    assert isinstance(policy, RetryPolicy)
    return policy


Retries = Annotated[RetryPolicy, Depends(_retry_policy)]


Events = QueueEventsDep


def _keyed_task(*problems: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries of a keyed operation answering one task: its ETag and the replay."""
    entries = idempotent(200)
    entries[200] = {"headers": {**entries[200]["headers"], **_ETAG_HEADER}}
    return {**entries, **problem_responses(*problems)} if problems else entries


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=TaskRead,
    summary="Create a task",
    responses=idempotent(201),
)
async def create_task(
    data: TaskCreate,
    caller: CurrentUser,
    session: SessionDep,
    request: Request,
    idempotency: IdempotencyDep,
    events: Events,
) -> TaskRead | Response:
    if (replay := await idempotency.replay(session, scope=caller.id)) is not None:
        return replay
    task = await TaskService(session, events=events).create(data, caller.id)
    # A relative reference (RFC 9110, 10.2.2): the collection's path plus the id. Cheaper
    # than request.url_for, which walks every route of the app on each call.
    location = f"{request.url.path.rstrip('/')}/{task.id}"
    headers = {"ETag": etag(task.version), "Location": location}
    return await idempotency.answer(task, status_code=status.HTTP_201_CREATED, headers=headers)


@router.get("", summary="Tasks of your projects, filtered, oldest first")
async def list_tasks(
    caller: CurrentReader,
    session: ReadSessionDep,
    pages: Pages,
    project_id: Annotated[ResourceId | None, Query()] = None,
    status: Annotated[TaskStatus | None, Query()] = None,
    assignee_id: Annotated[ResourceId | None, Query()] = None,
) -> Page[TaskRead]:
    filters = TaskFilters(project_id=project_id, status=status, assignee_id=assignee_id)
    rows = await TaskService(session).list_visible(
        caller.id, filters, pages.after_id, pages.limit + 1
    )
    items, next_cursor = pages.split(rows, lambda task: task.id)
    return Page(items=items, next_cursor=next_cursor)


@router.post(
    "/claim",
    response_model=TaskRead | ClaimedTasks,
    summary="Claim the best due task of the worker's project, or up to `limit` of them",
    response_description="Without `limit`: the claimed task, now in_progress with a lease. "
    'With `limit`: `{"items": [...]}`, the tasks claimed, best first (maybe none).',
    responses=idempotent(200, 204, s204="Nothing to claim (without `limit` only)"),
)
async def claim_task(
    data: ClaimRequest,
    caller: CurrentUser,
    session: SessionDep,
    idempotency: IdempotencyDep,
    retries: Retries,
    events: Events,
) -> TaskRead | ClaimedTasks | Response:
    # With a key, a retried claim gets the tasks its first attempt took, never others.
    if (replay := await idempotency.replay(session, scope=caller.id)) is not None:
        return replay
    service = TaskService(session, retries, events)
    if data.limit is not None:
        tasks = await service.claim_batch(data, caller.id, data.limit)
        return await idempotency.answer(ClaimedTasks(items=tasks), status_code=status.HTTP_200_OK)
    task = await service.claim(data, caller.id)
    if task is None:
        return await idempotency.answer(None, status_code=status.HTTP_204_NO_CONTENT)
    headers = {"ETag": etag(task.version)}
    return await idempotency.answer(task, status_code=status.HTTP_200_OK, headers=headers)


@router.post(
    "/complete",
    response_model=ClaimedTasks,
    summary="Finish several tasks the worker holds, with their results: all or none",
    response_description='`{"items": [...]}`: the tasks completed, in the order given',
    responses=idempotent(200),
)
async def complete_tasks(
    data: CompleteManyRequest,
    caller: CurrentUser,
    session: SessionDep,
    idempotency: IdempotencyDep,
    events: Events,
) -> ClaimedTasks | Response:
    # An agent that claimed a batch reports it in one request, not one per task.
    if (replay := await idempotency.replay(session, scope=caller.id)) is not None:
        return replay
    tasks = await TaskService(session, events=events).complete_batch(data, caller.id)
    return await idempotency.answer(ClaimedTasks(items=tasks), status_code=status.HTTP_200_OK)


@router.api_route("/claim", methods=["GET", "PUT", "PATCH", "DELETE"], include_in_schema=False)
@router.api_route("/complete", methods=["GET", "PUT", "PATCH", "DELETE"], include_in_schema=False)
async def post_only() -> None:
    # Without this, PATCH /tasks/claim (or /tasks/complete) would reach PATCH
    # /tasks/{task_id} and answer 422 for task_id="claim"; the resource exists and only POST
    # is allowed on it.
    raise HTTPException(status.HTTP_405_METHOD_NOT_ALLOWED, headers={"Allow": "POST"})


@router.get("/{task_id}", summary="One task", responses={200: {"headers": _ETAG_HEADER}})
async def read_task(
    task_id: ResourceId, caller: CurrentReader, session: ReadSessionDep, response: Response
) -> TaskRead:
    task = await TaskService(session).get(task_id, caller.id)
    response.headers["ETag"] = etag(task.version)
    return task


@router.patch(
    "/{task_id}",
    summary="Change a task (If-Match: its ETag, or last write wins)",
    # 409: a status change the task's lifecycle does not allow.
    responses={200: {"headers": _ETAG_HEADER}, **problem_responses(409, 412)},
)
async def update_task(
    caller: CurrentUser,
    task_id: ResourceId,
    data: TaskUpdate,
    if_match: IfMatchHeader,
    session: SessionDep,
    response: Response,
) -> TaskRead:
    task = await TaskService(session).update(task_id, data, if_match, caller.id)
    response.headers["ETag"] = etag(task.version)
    return task


@router.delete(
    "/{task_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a task (If-Match: its ETag)",
    responses=problem_responses(412),
)
async def delete_task(
    caller: CurrentUser, task_id: ResourceId, if_match: IfMatchHeader, session: SessionDep
) -> Response:
    await TaskService(session).delete(task_id, if_match, caller.id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{task_id}/heartbeat",
    summary="Extend the lease the worker holds on the task",
    responses={200: {"headers": _ETAG_HEADER}, **problem_responses(409)},
)
async def heartbeat(
    task_id: ResourceId,
    data: HeartbeatRequest,
    caller: CurrentUser,
    session: SessionDep,
    response: Response,
) -> TaskRead:
    task = await TaskService(session).heartbeat(task_id, data, caller.id)
    response.headers["ETag"] = etag(task.version)
    return task


async def _answer(task: TaskRead, idempotency: IdempotencyDep) -> TaskRead | Response:
    return await idempotency.answer(
        task, status_code=status.HTTP_200_OK, headers={"ETag": etag(task.version)}
    )


@router.post(
    "/{task_id}/complete",
    response_model=TaskRead,
    summary="Finish the task the worker holds, with its result",
    responses=_keyed_task(),
)
async def complete_task(
    task_id: ResourceId,
    data: CompleteRequest,
    caller: CurrentUser,
    session: SessionDep,
    idempotency: IdempotencyDep,
    events: Events,
) -> TaskRead | Response:
    if (replay := await idempotency.replay(session, scope=caller.id)) is not None:
        return replay
    task = await TaskService(session, events=events).complete(task_id, data, caller.id)
    return await _answer(task, idempotency)


@router.post(
    "/{task_id}/fail",
    response_model=TaskRead,
    summary="Fail the attempt the worker holds: retried after a backoff, or dead",
    response_description="The task: pending again (see `run_after`), or dead after its last "
    "attempt",
    responses=_keyed_task(),
)
async def fail_task(
    task_id: ResourceId,
    data: FailRequest,
    caller: CurrentUser,
    session: SessionDep,
    idempotency: IdempotencyDep,
    retries: Retries,
    events: Events,
) -> TaskRead | Response:
    if (replay := await idempotency.replay(session, scope=caller.id)) is not None:
        return replay
    task = await TaskService(session, retries, events).fail(task_id, data, caller.id)
    return await _answer(task, idempotency)


@router.post(
    "/{task_id}/retry",
    response_model=TaskRead,
    summary="Requeue a dead, failed or cancelled task now, with a fresh set of attempts",
    responses=_keyed_task(412),
)
async def retry_task(
    task_id: ResourceId,
    caller: CurrentUser,
    if_match: IfMatchHeader,
    session: SessionDep,
    idempotency: IdempotencyDep,
) -> TaskRead | Response:
    if (replay := await idempotency.replay(session, scope=caller.id)) is not None:
        return replay
    task = await TaskService(session).retry(task_id, if_match, caller.id)
    return await _answer(task, idempotency)


@router.get("/{task_id}/attempts", summary="The task's failed and expired attempts, oldest first")
async def list_attempts(
    task_id: ResourceId, caller: CurrentReader, session: ReadSessionDep
) -> list[AttemptRead]:
    return await TaskService(session).attempts(task_id, caller.id)
