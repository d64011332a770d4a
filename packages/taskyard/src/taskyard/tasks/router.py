"""``/tasks``: the queue, with optimistic concurrency (ETag / If-Match), claims (one task or
a batch), completions, failures and retries."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status

from sessionwise.fastapi import DatabaseDep, ReadSessionDep, SessionDep
from sessionwise.fastapi.idempotency import IdempotencyDep
from taskyard.api_types import Page, ResourceId
from taskyard.auth import CallerWithoutSession, CurrentReader, CurrentUser
from taskyard.etags import IfMatchHeader, etag
from taskyard.idempotency import idempotent
from taskyard.pagination import PageRequest, page_request
from taskyard.problems import problem_responses
from taskyard.read_your_writes import remember_write
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
from taskyard.tasks.service import ClaimMiss, TaskService
from taskyard.tasks.waiting import Answered, claim_waiting
from taskyard.tasks.wakeups import WakeupHub

__all__ = ["router"]

router = APIRouter(prefix="/tasks", tags=["tasks"])
Pages = Annotated[PageRequest, Depends(page_request("tasks"))]
_ETAG_HEADER = {"ETag": {"description": "The task's version", "schema": {"type": "string"}}}


def _retry_policy(request: Request) -> RetryPolicy:
    policy = request.app.state.retry_policy
    assert isinstance(policy, RetryPolicy)
    return policy


Retries = Annotated[RetryPolicy, Depends(_retry_policy)]


async def _wakeups(request: Request) -> WakeupHub:
    hub = getattr(request.app.state, "wakeups", None)
    if not isinstance(hub, WakeupHub):
        raise RuntimeError("no WakeupHub on app.state: the app's lifespan has not run")
    return hub


Wakeups = Annotated[WakeupHub, Depends(_wakeups)]


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
    wakeups: Wakeups,
    events: Events,
) -> TaskRead | Response:
    if (replay := await idempotency.replay(session, scope=caller.id)) is not None:
        return replay
    task = await TaskService(session, events=events, wakeups=wakeups).create(data, caller.id)
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
    responses=idempotent(200, 204, s204="Nothing to claim within `wait_seconds` (without `limit`)"),
)
async def claim_task(
    data: ClaimRequest,
    request: Request,
    caller: CallerWithoutSession,
    db: DatabaseDep,
    idempotency: IdempotencyDep,
    retries: Retries,
    wakeups: Wakeups,
    events: Events,
) -> TaskRead | ClaimedTasks | Response:
    # No SessionDep: a claim that waits must not hold a connection while it waits. Each
    # attempt is a short session of its own, committed (with the idempotency record) before
    # the answer, as SessionDep would.
    async def attempt(final: bool) -> Answered[TaskRead | ClaimedTasks | Response] | ClaimMiss:
        async with db.session() as session:
            if db.replicated:  # the caller's next reads see this claim (as CurrentUser does)
                remember_write(db, session, caller.key_id)
            # With a key, a retried claim gets the tasks its first attempt took, never others;
            # each attempt looks again (a first request with the key may have answered).
            if (replay := await idempotency.replay(session, scope=caller.id)) is not None:
                return Answered(replay, pass_on=False)
            service = TaskService(session, retries, events, wakeups)
            limit = data.limit or 1
            outcome = await service.claim_or_miss(data, caller.id, limit, waiting=not final)
            if isinstance(outcome, ClaimMiss) and not final:
                return outcome
            tasks = [] if isinstance(outcome, ClaimMiss) else outcome
            project_id = tasks[0].project_id if tasks else None
            # Another claim waits here and there is more work: wake it (a notification may
            # have stood for several tasks). Not otherwise: the head of the line stays there.
            more = (
                project_id is not None
                and wakeups.waiting(project_id) > 0
                and await service.more_due(project_id)
            )
            answer = await _claim_answer(tasks, data, idempotency)
        lease = tasks[0].lease_expires_at if tasks else None
        if project_id is not None and lease is not None and wakeups.waiting(project_id):
            # Claims waiting here learn of this lease now: should it run out, they take over.
            wakeups.wake_at(project_id, lease)
        return Answered(answer, pass_on=more)

    async def on_timeout() -> TaskRead | ClaimedTasks | Response:
        if idempotency.key is None:
            return await _claim_answer([], data, idempotency)
        answered = await attempt(True)  # stored under the key, like any answer
        assert isinstance(answered, Answered)
        return answered.answer

    async def disconnected() -> None:
        # The body is read: the next message the server sends is the disconnect.
        while (await request.receive())["type"] != "http.disconnect":
            pass

    answer = await claim_waiting(wakeups, data.wait_seconds, attempt, on_timeout, disconnected)
    # None: the client is gone; nothing was claimed or stored, and nobody reads this.
    return Response(status_code=status.HTTP_204_NO_CONTENT) if answer is None else answer


async def _claim_answer(
    tasks: list[TaskRead], data: ClaimRequest, idempotency: IdempotencyDep
) -> TaskRead | ClaimedTasks | Response:
    if data.limit is not None:
        return await idempotency.answer(ClaimedTasks(items=tasks), status_code=status.HTTP_200_OK)
    if not tasks:
        return await idempotency.answer(None, status_code=status.HTTP_204_NO_CONTENT)
    headers = {"ETag": etag(tasks[0].version)}
    return await idempotency.answer(tasks[0], status_code=status.HTTP_200_OK, headers=headers)


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
    wakeups: Wakeups,
) -> TaskRead:
    task = await TaskService(session, wakeups=wakeups).update(task_id, data, if_match, caller.id)
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
    wakeups: Wakeups,
    events: Events,
) -> TaskRead | Response:
    if (replay := await idempotency.replay(session, scope=caller.id)) is not None:
        return replay
    task = await TaskService(session, retries, events, wakeups).fail(task_id, data, caller.id)
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
    wakeups: Wakeups,
) -> TaskRead | Response:
    if (replay := await idempotency.replay(session, scope=caller.id)) is not None:
        return replay
    task = await TaskService(session, wakeups=wakeups).retry(task_id, if_match, caller.id)
    return await _answer(task, idempotency)


@router.get("/{task_id}/attempts", summary="The task's failed and expired attempts, oldest first")
async def list_attempts(
    task_id: ResourceId, caller: CurrentReader, session: ReadSessionDep
) -> list[AttemptRead]:
    return await TaskService(session).attempts(task_id, caller.id)
