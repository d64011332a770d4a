"""How a FastAPI (or Starlette) app answers database failures: exception handlers.

`install_error_handlers` registers one handler for ``sqlalchemy.exc.SQLAlchemyError`` and one
for `WriteQueueTimeoutError` (the one sessionwise error that is a database failure: its own
wait for SQLite's write lock ran out). Other sessionwise errors (`NestedSessionError`,
`SessionEndedError`, ...) are bugs in the app and meet no handler of ours: a handler would
make Starlette replace one raised after the response started with a RuntimeError of its own
("Caught handled exception, but response already started"). Each classifies the exception
by its cause (`sessionwise.errors`: SQLSTATE on PostgreSQL, the result code on SQLite) and
answers:

* no connection within ``pool_timeout``, the database unreachable or out of resources, a lock
  wait that ran out (SQLite busy, PostgreSQL ``lock_timeout``), a serialization conflict or
  deadlock -> ``503`` with ``Retry-After``;
* ``statement_timeout`` -> ``504``;
* a constraint refusing the change -> ``409``.

Everything else is not the handlers' to answer: it goes on to the app's own handler for one
of its classes, if there is one, and is otherwise re-raised, a 500 whose traceback the server
logs. Each answer it makes logs one WARNING on the ``sessionwise`` logger naming the failure,
its class and code, and the request's method and route; neither that record nor the body
carries SQL, parameters or the driver's message. The full table: ``docs/errors.md``.

Being exception handlers, they answer alike whichever dependency (or none) opened the
session, and the app keeps the last word: Starlette looks a handler up along the exception's
MRO, so the app's handler for ``IntegrityError`` is found before this one for
``SQLAlchemyError``, and installing never replaces a handler the app registered for the same
class. ``render=`` shapes the response (e.g. as RFC 9457 problem details).

`Database.lifespan` installs them with the default rendering: importing `sessionwise.fastapi`
registers a hook (`sessionwise.app_hooks`). Starlette copies the handlers into the middleware
stack it builds at the first ASGI call, which is the lifespan's own; so when that stack is
already built, installing discards it and the next request builds it again, creating every
middleware of the app a second time. Call `install_error_handlers(app)` when creating the app
to have it built once with them.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response

from sessionwise.app_hooks import register_app_hook
from sessionwise.database import Database
from sessionwise.errors import Failure, cause, classify, driver_error
from sessionwise.exceptions import SessionwiseError, WriteQueueTimeoutError
from sessionwise.fastapi.routes import route_template

__all__ = ["FailureAnswer", "Render", "answer_for", "install_error_handlers"]

logger = logging.getLogger("sessionwise")

# The exception classes the handlers are registered for (see the module docstring).
_HANDLED: tuple[type[Exception], ...] = (SQLAlchemyError, WriteQueueTimeoutError)

_STATUS = {
    Failure.POOL_EXHAUSTED: (503, "database busy: no connection became free in time"),
    Failure.UNAVAILABLE: (503, "database unavailable"),
    Failure.LOCKED: (503, "database busy: a lock was not granted in time"),
    Failure.CONFLICT: (503, "transaction conflict with a concurrent request"),
    Failure.TIMEOUT: (504, "database statement timed out"),
    Failure.INTEGRITY: (409, "the change conflicts with existing data"),
}


@dataclass(frozen=True)
class FailureAnswer:
    """The answer to a database failure, before it is rendered.

    Attributes:
        failure: What went wrong (`sessionwise.Failure`).
        status_code: 409, 503 or 504.
        detail: A sentence for the client; never SQL, parameters or the driver's message.
        headers: ``Retry-After`` on 503 answers.
        error: The exception, for logs and metrics; not for the client.
    """

    failure: Failure
    status_code: int
    detail: str
    headers: Mapping[str, str] = field(default_factory=dict)
    error: BaseException | None = field(default=None, compare=False)


Render = Callable[[Request, FailureAnswer], Response | Awaitable[Response]]
"""``render(request, answer)``: the response for a `FailureAnswer` (sync or async)."""


def answer_for(error: BaseException, *, retry_after: int = 1) -> FailureAnswer | None:
    """The answer for *error* if it is a database failure with a name, else ``None``.

    For handlers of your own that want the library's classification: ``None`` means "not a
    failure a client can act on" (`Failure.OTHER`), a bug to let through as a 500.

    Args:
        error: Any exception.
        retry_after: Seconds for the ``Retry-After`` header of 503 answers.
    """
    failure = classify(error)
    if failure not in _STATUS:
        return None
    status, detail = _STATUS[failure]
    headers = {"Retry-After": str(max(1, retry_after))} if status == 503 else {}
    return FailureAnswer(failure, status, detail, headers, error)


def install_error_handlers(app: Starlette, *, render: Render | None = None) -> None:
    """Answer database failures on *app* as 409 / 503 / 504 (see the module docstring).

    Idempotent, and never replaces a handler the app registered for ``SQLAlchemyError`` or
    `WriteQueueTimeoutError` (nor a handler of an earlier call). `Database.lifespan` calls it with
    the defaults; call it yourself, before the app starts, for another ``render``.

    Args:
        app: The FastAPI or Starlette application.
        render: Makes the response for a `FailureAnswer`; by default
            ``{"detail": answer.detail}`` as JSON, with the answer's status and headers.
    """
    if _add_handlers(app, render) and app.middleware_stack is not None:
        # Built already (we run inside the lifespan's ASGI call), with a copy of the
        # handlers made before these were added: build it again at the next request.
        app.middleware_stack = None


def _add_handlers(app: Starlette, render: Render | None) -> bool:
    handler = _FailureHandler(render)
    added = False
    for error_class in _HANDLED:
        if error_class not in app.exception_handlers:
            app.exception_handlers[error_class] = handler
            added = True
    return added


def install_error_handlers_late(request: Request) -> None:
    """Install the handlers from within a request, for an app whose lifespan never ran them.

    Tests often skip the lifespan and put a started `Database` on ``app.state`` themselves;
    their sessions would otherwise meet no handler and answer every database failure with a
    500. The session dependencies call this on every request; once installed it costs one
    dictionary lookup. The middleware stack is built already, so besides the app's handlers
    this adds them to the exception middleware's own, which Starlette hands to the router in
    the request's scope (``starlette.exception_handlers``): this request and the following
    ones see them, without building the stack again.
    """
    app = request.app
    if not isinstance(app, Starlette) or SQLAlchemyError in app.exception_handlers:
        return
    _add_handlers(app, None)
    live = request.scope.get("starlette.exception_handlers")
    if isinstance(live, tuple) and live and isinstance(live[0], dict):
        for error_class in _HANDLED:
            live[0].setdefault(error_class, app.exception_handlers[error_class])


def _install_on_lifespan(app: Any, _database: Database) -> None:
    if isinstance(app, Starlette):
        install_error_handlers(app)


register_app_hook(_install_on_lifespan)


class _FailureHandler:
    """The exception handler `install_error_handlers` registers."""

    def __init__(self, render: Render | None) -> None:
        self._render = render

    async def __call__(self, request: HTTPConnection, error: Exception) -> Response:
        if not isinstance(request, Request):
            raise error  # a WebSocket: no response to make; Starlette closes it as before
        db = getattr(request.app.state, "sessionwise_database", None)
        retry_after = math.ceil(db.config.pool_timeout) if isinstance(db, Database) else 1
        answer = answer_for(error, retry_after=retry_after)
        if answer is None:
            return await _not_ours(request, error)
        _log(request, answer, error)
        if self._render is None:
            return JSONResponse(
                {"detail": answer.detail},
                status_code=answer.status_code,
                headers=dict(answer.headers),
            )
        response = self._render(request, answer)
        if inspect.isawaitable(response):
            response = await response
        return response


async def _not_ours(request: Request, error: Exception) -> Response:
    # Starlette calls only the first handler along the MRO, this one; hand the error to the
    # app's handler of a class further along (DatabaseStateError is also a RuntimeError), as
    # if this one were not there. Exception's handler is left to ServerErrorMiddleware,
    # which also re-raises so that the server logs the traceback.
    handlers = request.app.exception_handlers
    for error_class in type(error).__mro__:
        if error_class is Exception:
            break
        handler = handlers.get(error_class)
        if handler is not None and not isinstance(handler, _FailureHandler):
            response = handler(request, error)
            if inspect.isawaitable(response):
                response = await response
            assert isinstance(response, Response)
            return response
    raise error


def _log(request: Request, answer: FailureAnswer, error: BaseException) -> None:
    # The template, never the path: a log record carries no ids or text a client sent.
    template = route_template(request.scope) or "unmatched route"
    described = type(error).__name__
    original = driver_error(error)
    if original is not None:
        described += f" from {type(original).__name__}"
    code = cause(error)
    if code is not None:
        described += f", {code}"
    # sessionwise's own messages say what to do; SQLAlchemy's and the driver's carry SQL.
    said = f": {error}" if isinstance(error, SessionwiseError) else ""
    logger.warning(
        "%s %s answered %d, database %s (%s)%s",
        request.method,
        template,
        answer.status_code,
        answer.failure.value.replace("_", " "),
        described,
        said,
        extra={
            "sessionwise_failure": answer.failure.value,
            "status_code": answer.status_code,
            "route": template,
        },
    )
