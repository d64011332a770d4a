"""The board's pages: sign-in, projects, a project's board, tasks, people.

Routes parse a form or a query, call the services the API calls (``taskyard.*.service``), in
the request's sessionwise session (committed before the response is sent), and render. A
form that works posts and redirects (303) without JavaScript; with htmx it gets back the
fragment it replaces.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse
from markupsafe import Markup
from pydantic import ValidationError
from starlette.responses import Response

from sessionwise import Session
from sessionwise.fastapi import ReadSessionDep, SessionDep
from taskyard.api_types import ResourceId
from taskyard.board.columns import (
    MAX_SHOWN,
    PAGE_SIZE,
    BoardFilters,
    column_listing,
    fingerprint,
    load_column,
    load_columns,
)
from taskyard.board.pages import is_htmx, render, render_text, status_label
from taskyard.board.sessions import SESSION_LIFETIME, BoardSessionService
from taskyard.board.tokens import new_token
from taskyard.board.visitors import (
    COOKIE_NAME,
    SIGN_IN_COOKIE_NAME,
    BoardReader,
    BoardWriter,
    CsrfRefused,
    Visitor,
    board_tokens,
)
from taskyard.errors import ProblemError, ProblemKind
from taskyard.etags import IfMatch
from taskyard.pagination import CursorCodec
from taskyard.projects.service import ProjectService
from taskyard.tasks.dependencies import QueueEventsDep
from taskyard.tasks.models import TaskStatus
from taskyard.tasks.schemas import TaskCreate, TaskRead, TaskUpdate
from taskyard.tasks.service import TaskService
from taskyard.tasks.wakeups import wakeups_of
from taskyard.timestamps import utc_now
from taskyard.workers.models import Worker
from taskyard.workers.schemas import WorkerCreate
from taskyard.workers.service import WorkerService

__all__ = ["router"]

router = APIRouter()

Cursor = Annotated[str | None, Query(max_length=200)]
FormText = Annotated[str, Form(max_length=20_000)]
Version = Annotated[int, Form(ge=1)]
_MAX_WORKERS_LISTED = 200  # in the assignee menus; the people page pages through all of them


def _codec(request: Request) -> CursorCodec:
    codec = request.app.state.cursor_codec
    assert isinstance(codec, CursorCodec)
    return codec


def _see_other(request: Request, path: str) -> RedirectResponse:
    return RedirectResponse(f"{request.scope.get('root_path', '')}{path}", status_code=303)


def _cookie_flags(request: Request) -> dict[str, Any]:
    # Secure whenever the board is served over https (uvicorn's --proxy-headers sets the
    # scheme from a trusted proxy's X-Forwarded-Proto).
    return {
        "httponly": True,
        "samesite": "lax",
        "secure": request.url.scheme == "https",
        "path": request.scope.get("root_path", "") or "/",
    }


def _field_errors(error: ValidationError) -> dict[str, str]:
    return {
        ".".join(str(part) for part in item["loc"]) or "form": item["msg"]
        for item in error.errors()
    }


def _parse_int(value: str, field: str, errors: dict[str, str]) -> int | None:
    value = value.strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        errors[field] = "must be a whole number"
        return None


# -- sign-in and sign-out -------------------------------------------------------------------


def _sign_in_page(
    request: Request, *, error: str | None = None, status_code: int = 200
) -> Response:
    tokens = board_tokens(request)
    nonce = new_token()
    response = render(
        request,
        "sign_in.html",
        {"csrf_token": tokens.csrf_token(nonce), "error": error},
        status_code=status_code,
    )
    flags = _cookie_flags(request)
    response.set_cookie(SIGN_IN_COOKIE_NAME, tokens.cookie_value(nonce), max_age=3600, **flags)
    return response


@router.get("/sign-in", name="sign_in")
async def sign_in_form(request: Request) -> Response:
    return _sign_in_page(request)


@router.post("/sign-in")
async def sign_in(
    request: Request,
    session: SessionDep,
    api_key: Annotated[str, Form(max_length=200)] = "",
    csrf_token: Annotated[str | None, Form(max_length=200)] = None,
) -> Response:
    tokens = board_tokens(request)
    nonce = tokens.token_of(request.cookies.get(SIGN_IN_COOKIE_NAME))
    if nonce is None or not tokens.csrf_matches(nonce, csrf_token):
        raise CsrfRefused
    opened = await BoardSessionService(session).sign_in(api_key.strip())
    if opened is None:
        # The key is not repeated back: the form comes back empty.
        return _sign_in_page(
            request,
            error="That API key is not valid (unknown, mistyped or revoked).",
            status_code=401,
        )
    response = _see_other(request, "/projects")
    flags = _cookie_flags(request)
    response.set_cookie(
        COOKIE_NAME,
        tokens.cookie_value(opened.token),
        max_age=int(SESSION_LIFETIME.total_seconds()),
        **flags,
    )
    response.delete_cookie(SIGN_IN_COOKIE_NAME, **flags)
    return response


@router.post("/sign-out")
async def sign_out(request: Request, visitor: BoardWriter, session: SessionDep) -> Response:
    await BoardSessionService(session).sign_out(visitor.token)
    response = _see_other(request, "/sign-in")
    response.delete_cookie(COOKIE_NAME, **_cookie_flags(request))
    return response


# -- projects -------------------------------------------------------------------------------


@router.get("/")
async def home(request: Request, visitor: BoardReader) -> Response:
    return _see_other(request, "/projects")


@router.get("/projects")
async def projects(
    request: Request, visitor: BoardReader, session: ReadSessionDep, cursor: Cursor = None
) -> Response:
    codec = _codec(request)
    after = None if cursor is None else codec.decode("board-projects", cursor)
    rows = await ProjectService(session).list_visible(visitor.caller.id, after, PAGE_SIZE + 1)
    shown = rows[:PAGE_SIZE]
    next_cursor = None
    if len(rows) > PAGE_SIZE and shown[-1].id is not None:
        next_cursor = codec.encode("board-projects", shown[-1].id)
    context = {"projects": shown, "next_cursor": next_cursor}
    template = "_project_items.html" if is_htmx(request) and cursor else "projects.html"
    return render(request, template, context, visitor=visitor)


# -- a project's board ----------------------------------------------------------------------


async def _workers(session: Session, user_id: int, project_id: int) -> list[Worker]:
    return await WorkerService(session).list_visible(user_id, project_id, None, _MAX_WORKERS_LISTED)


def _filters(assignee: str | None, show: str | None) -> BoardFilters:
    # Unknown values select nothing special rather than failing: they come from a GET form.
    assignee_id = int(assignee) if assignee and assignee.isdigit() and len(assignee) < 10 else None
    status = next((status for status in TaskStatus if status.value == show), None)
    return BoardFilters(assignee_id=assignee_id, show=status)


def _shown(request: Request) -> dict[TaskStatus, int]:
    shown = {}
    for status in TaskStatus:
        value = request.query_params.get(f"shown_{status.value}", "")
        if value.isdigit() and len(value) < 5:
            shown[status] = min(int(value), MAX_SHOWN)
    return shown


async def _board_context(
    request: Request,
    visitor: Visitor,
    session: Session,
    project_id: int,
    filters: BoardFilters,
    *,
    shown: dict[TaskStatus, int] | None = None,
    notice: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What ``_board.html`` shows; its ``columns_html`` is rendered here to fingerprint it."""
    project = await ProjectService(session).get(project_id, visitor.caller.id)  # 404 unless member
    workers = await _workers(session, visitor.caller.id, project_id)
    columns = await load_columns(
        session, visitor.caller.id, project_id, filters, _codec(request), shown or {}
    )
    context: dict[str, Any] = {
        "project": project,
        "workers": workers,
        "filters": filters,
        "columns": columns,
        "csrf_token": visitor.csrf_token,
        "page_size": PAGE_SIZE,
    }
    columns_html = render_text(request, "_columns.html", context)
    seen = fingerprint(columns_html)
    # Markup: rendered by the autoescaping environment already; escaping it again would show
    # tags as text.
    context.update(columns_html=Markup(columns_html), seen=seen, notice=notice)
    # Outside the fingerprinted columns: lease countdowns run on the server's clock.
    context["server_now"] = utc_now().isoformat()
    return context


@router.get("/projects/{project_id}")
async def board(
    request: Request,
    project_id: ResourceId,
    visitor: BoardReader,
    session: ReadSessionDep,
    assignee: Annotated[str | None, Query(max_length=12)] = None,
    show: Annotated[str | None, Query(max_length=20)] = None,
) -> Response:
    filters = _filters(assignee, show)
    context = await _board_context(request, visitor, session, project_id, filters)
    context["form"] = {"values": {}, "errors": {}}
    return render(request, "board.html", context, visitor=visitor)


@router.get("/projects/{project_id}/board")
async def board_fragment(
    request: Request,
    project_id: ResourceId,
    visitor: BoardReader,
    session: ReadSessionDep,
    assignee: Annotated[str | None, Query(max_length=12)] = None,
    show: Annotated[str | None, Query(max_length=20)] = None,
    seen: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    """The self-refreshing part of the board; 204 when it is what the client has."""
    filters = _filters(assignee, show)
    context = await _board_context(
        request, visitor, session, project_id, filters, shown=_shown(request)
    )
    if seen is not None and seen == context["seen"]:
        return Response(status_code=204)
    return render(request, "_board.html", context, visitor=visitor)


@router.get("/projects/{project_id}/columns/{status}")
async def column_page(
    request: Request,
    project_id: ResourceId,
    status: TaskStatus,
    visitor: BoardReader,
    session: ReadSessionDep,
    cursor: Cursor = None,
    assignee: Annotated[str | None, Query(max_length=12)] = None,
    shown: Annotated[int, Query(ge=0, le=100_000)] = 0,
) -> Response:
    """ "Load more" of one column: the next cards (htmx) or a page of them."""
    codec = _codec(request)
    after = None if cursor is None else codec.decode(column_listing(project_id, status), cursor)
    filters = _filters(assignee, None)
    project = await ProjectService(session).get(project_id, visitor.caller.id)
    column = await load_column(
        session, visitor.caller.id, project_id, status, filters, codec, after_id=after
    )
    context = {
        "project": project,
        "column": column,
        "filters": filters,
        "csrf_token": visitor.csrf_token,
        "shown_before": shown,
    }
    template = "_more_cards.html" if is_htmx(request) else "column.html"
    return render(request, template, context, visitor=visitor)


# -- tasks ----------------------------------------------------------------------------------


@router.post("/projects/{project_id}/tasks")
async def create_task(
    request: Request,
    project_id: ResourceId,
    visitor: BoardWriter,
    session: SessionDep,
    events: QueueEventsDep,
    title: FormText = "",
    description: FormText = "",
    priority: Annotated[str, Form(max_length=20)] = "0",
    assignee_id: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    values = {
        "title": title,
        "description": description,
        "priority": priority,
        "assignee_id": assignee_id,
    }
    errors: dict[str, str] = {}
    data: dict[str, Any] = {"project_id": project_id, "title": title, "description": description}
    data["priority"] = _parse_int(priority, "priority", errors) or 0
    data["assignee_id"] = _parse_int(assignee_id, "assignee_id", errors)
    task: TaskRead | None = None
    if not errors:
        try:
            # Agents waiting for work are woken by a card as by an API create.
            service = TaskService(session, events=events, wakeups=wakeups_of(request.app.state))
            task = await service.create(TaskCreate.model_validate(data), visitor.caller.id)
        except ValidationError as error:
            errors = _field_errors(error)
        except ProblemError as error:
            if error.kind is not ProblemKind.NOT_FOUND or error.errors is None:
                raise
            # An assignee not in the project (a stale menu); a missing project stays a 404.
            if error.errors[0].field == "project_id":
                raise
            errors = {error.errors[0].field: error.errors[0].message}
    filters = BoardFilters()
    if task is None:
        context = await _board_context(request, visitor, session, project_id, filters)
        context["form"] = {"values": values, "errors": errors}
        if is_htmx(request):
            # Back into the form, not the board: the board is not where the error is.
            headers = {"HX-Retarget": "#new-task", "HX-Reswap": "outerHTML"}
            return render(
                request,
                "_new_task.html",
                context,
                visitor=visitor,
                status_code=422,
                headers=headers,
            )
        return render(request, "board.html", context, visitor=visitor, status_code=422)
    if not is_htmx(request):
        return _see_other(request, f"/projects/{project_id}")
    context = await _board_context(request, visitor, session, project_id, filters)
    return render(request, "_board.html", context, visitor=visitor)


def _conflict_notice(task: TaskRead, attempted: str) -> dict[str, Any]:
    return {"kind": "conflict", "task": task, "attempted": attempted}


ChangeOnBoard = Callable[[TaskService, IfMatch], Awaitable[TaskRead]]


async def _change_on_board(
    request: Request,
    visitor: Visitor,
    session: Session,
    task_id: int,
    version: int,
    change: ChangeOnBoard,
    attempted: str,
    filters: BoardFilters,
) -> Response:
    """Apply a card's button (move, retry) if the task is still at the version shown."""
    service = TaskService(session, wakeups=wakeups_of(request.app.state))
    notice = None
    try:
        task = await change(service, IfMatch(any_version=False, versions=frozenset({version})))
    except ProblemError as error:
        if error.kind is ProblemKind.NOT_FOUND:
            raise
        task = await service.get(task_id, visitor.caller.id)
        if error.kind is ProblemKind.PRECONDITION_FAILED:
            notice = _conflict_notice(task, attempted)
        else:  # the lifecycle refused it (a 409 in the API)
            notice = {"kind": "refused", "task": task, "detail": error.detail}
    if notice is None and not is_htmx(request):
        return _see_other(request, f"/projects/{task.project_id}{filters.query()}")
    context = await _board_context(
        request, visitor, session, task.project_id, filters, notice=notice
    )
    status_code = 200 if notice is None else 409
    if is_htmx(request):
        return render(request, "_board.html", context, visitor=visitor, status_code=status_code)
    context["form"] = {"values": {}, "errors": {}}
    return render(request, "board.html", context, visitor=visitor, status_code=status_code)


@router.post("/tasks/{task_id}/move")
async def move_task(
    request: Request,
    task_id: ResourceId,
    visitor: BoardWriter,
    session: SessionDep,
    version: Version,
    status: Annotated[TaskStatus, Form()],
    assignee: Annotated[str | None, Form(max_length=12)] = None,
    show: Annotated[str | None, Form(max_length=20)] = None,
) -> Response:
    """Move a task to another column (``PATCH`` with ``If-Match``, in the API's terms)."""

    async def move(service: TaskService, if_match: IfMatch) -> TaskRead:
        return await service.update(task_id, TaskUpdate(status=status), if_match, visitor.caller.id)

    filters = _filters(assignee, show)
    attempted = f"move it to {status_label(status)}"
    return await _change_on_board(
        request, visitor, session, task_id, version, move, attempted, filters
    )


@router.post("/tasks/{task_id}/retry")
async def retry_task(
    request: Request,
    task_id: ResourceId,
    visitor: BoardWriter,
    session: SessionDep,
    version: Version,
    assignee: Annotated[str | None, Form(max_length=12)] = None,
    show: Annotated[str | None, Form(max_length=20)] = None,
) -> Response:
    """Requeue a dead, failed or cancelled task with fresh attempts (``POST .../retry``)."""

    async def retry(service: TaskService, if_match: IfMatch) -> TaskRead:
        return await service.retry(task_id, if_match, visitor.caller.id)

    filters = _filters(assignee, show)
    return await _change_on_board(
        request, visitor, session, task_id, version, retry, "retry it", filters
    )


async def _task_page(
    request: Request,
    visitor: Visitor,
    session: Session,
    task: TaskRead,
    *,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    notice: dict[str, Any] | None = None,
    status_code: int = 200,
) -> Response:
    workers = await _workers(session, visitor.caller.id, task.project_id)
    shown = values or {
        "title": task.title,
        "description": task.description,
        "priority": str(task.priority),
        "status": task.status.value,
        "assignee_id": "" if task.assignee is None else str(task.assignee.id),
    }
    context = {
        "task": task,
        "workers": workers,
        "values": shown,
        "errors": errors or {},
        "notice": notice,
        "csrf_token": visitor.csrf_token,
    }
    return render(request, "task.html", context, visitor=visitor, status_code=status_code)


@router.get("/tasks/{task_id}")
async def task_page(
    request: Request, task_id: ResourceId, visitor: BoardReader, session: ReadSessionDep
) -> Response:
    task = await TaskService(session).get(task_id, visitor.caller.id)
    return await _task_page(request, visitor, session, task)


@router.post("/tasks/{task_id}")
async def edit_task(
    request: Request,
    task_id: ResourceId,
    visitor: BoardWriter,
    session: SessionDep,
    version: Version,
    title: FormText = "",
    description: FormText = "",
    priority: Annotated[str, Form(max_length=20)] = "0",
    status: Annotated[str, Form(max_length=20)] = "",
    assignee_id: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    """Save the edit form, if the task is still at the version the form was opened at."""
    service = TaskService(session, wakeups=wakeups_of(request.app.state))
    values = {
        "title": title,
        "description": description,
        "priority": priority,
        "status": status,
        "assignee_id": assignee_id,
    }
    errors: dict[str, str] = {}
    data: dict[str, Any] = {"title": title, "description": description, "status": status}
    data["priority"] = _parse_int(priority, "priority", errors) or 0
    data["assignee_id"] = _parse_int(assignee_id, "assignee_id", errors)
    update = None
    if not errors:
        try:
            update = TaskUpdate.model_validate(data)
        except ValidationError as error:
            errors = _field_errors(error)
    if update is None:
        task = await service.get(task_id, visitor.caller.id)
        return await _task_page(
            request, visitor, session, task, values=values, errors=errors, status_code=422
        )
    if_match = IfMatch(any_version=False, versions=frozenset({version}))
    try:
        task = await service.update(task_id, update, if_match, visitor.caller.id)
    except ProblemError as error:
        if error.kind is ProblemKind.PRECONDITION_FAILED:
            current = await service.get(task_id, visitor.caller.id)
            # The form keeps what was typed, now against the current version: saving again
            # is a deliberate choice to overwrite, made after seeing the new state.
            return await _task_page(
                request,
                visitor,
                session,
                current,
                values=values,
                notice=_conflict_notice(current, "save your edit"),
                status_code=409,
            )
        if error.kind is ProblemKind.CONFLICT or (
            error.kind is ProblemKind.NOT_FOUND and error.errors
        ):
            # A status the lifecycle does not allow from here, or an assignee not in the
            # project: said next to the field.
            task = await service.get(task_id, visitor.caller.id)
            field_errors = (
                {item.field: item.message for item in error.errors}
                if error.errors
                else {"status": error.detail or "not allowed"}
            )
            return await _task_page(
                request, visitor, session, task, values=values, errors=field_errors, status_code=422
            )
        raise
    if not is_htmx(request):
        return _see_other(request, f"/projects/{task.project_id}")
    return await _task_page(request, visitor, session, task, notice={"kind": "saved", "task": task})


# -- people ---------------------------------------------------------------------------------


async def _people_page(
    request: Request,
    visitor: Visitor,
    session: Session,
    project_id: int,
    cursor: str | None,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    codec = _codec(request)
    listing = f"board-{project_id}-workers"
    after = None if cursor is None else codec.decode(listing, cursor)
    project = await ProjectService(session).get(project_id, visitor.caller.id)
    rows = await WorkerService(session).list_visible(
        visitor.caller.id, project_id, after, PAGE_SIZE + 1
    )
    workers = rows[:PAGE_SIZE]
    next_cursor = None
    if len(rows) > PAGE_SIZE and workers[-1].id is not None:
        next_cursor = codec.encode(listing, workers[-1].id)
    context = {
        "project": project,
        "workers": workers,
        "next_cursor": next_cursor,
        "csrf_token": visitor.csrf_token,
        "values": values or {},
        "errors": errors or {},
    }
    template = "_worker_items.html" if is_htmx(request) and cursor else "people.html"
    return render(request, template, context, visitor=visitor, status_code=status_code)


@router.get("/projects/{project_id}/people")
async def people(
    request: Request,
    project_id: ResourceId,
    visitor: BoardReader,
    session: ReadSessionDep,
    cursor: Cursor = None,
) -> Response:
    return await _people_page(request, visitor, session, project_id, cursor)


@router.post("/projects/{project_id}/workers")
async def add_worker(
    request: Request,
    project_id: ResourceId,
    visitor: BoardWriter,
    session: SessionDep,
    name: FormText = "",
) -> Response:
    try:
        data = WorkerCreate.model_validate({"project_id": project_id, "name": name})
    except ValidationError as error:
        return await _people_page(
            request,
            visitor,
            session,
            project_id,
            None,
            values={"name": name},
            errors=_field_errors(error),
            status_code=422,
        )
    await WorkerService(session).create(data, visitor.caller.id)
    if not is_htmx(request):
        return _see_other(request, f"/projects/{project_id}/people")
    return await _people_page(request, visitor, session, project_id, None)
