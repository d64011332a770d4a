"""Errors as pages: what a person sees instead of the API's problem documents.

A missing project and someone else's project are the same 404, as in the API. A request
without a live session goes to the sign-in page (htmx follows ``HX-Redirect``); one without
its CSRF token is a 403.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from sessionwise.fastapi import FailureAnswer
from taskyard.board.pages import is_htmx, render
from taskyard.board.visitors import COOKIE_NAME, CsrfRefused, NotSignedIn
from taskyard.errors import ProblemError

__all__ = ["database_failure_page", "install_page_handlers"]

_TITLES = {
    400: "Bad request",
    401: "Not signed in",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Too large",
    422: "Invalid input",
    500: "Something went wrong",
    503: "Service unavailable",
    504: "Timed out",
}


def error_page(
    request: Request, status_code: int, detail: str, headers: dict[str, str] | None = None
) -> Response:
    title = _TITLES.get(status_code, "Error")
    context = {"status_code": status_code, "title": title, "detail": detail}
    return render(request, "error.html", context, status_code=status_code, headers=headers)


async def _not_signed_in(request: Request, _error: Exception) -> Response:
    sign_in = f"{request.scope.get('root_path', '')}/sign-in"
    response: Response
    if is_htmx(request):
        response = Response(status_code=401, headers={"HX-Redirect": sign_in})
    else:
        response = RedirectResponse(sign_in, status_code=303)
    if COOKIE_NAME in request.cookies:
        response.delete_cookie(COOKIE_NAME, path=request.scope.get("root_path", "") or "/")
    return response


async def _csrf_refused(request: Request, _error: Exception) -> Response:
    detail = "This form is out of date or did not come from the board. Reload the page and retry."
    return error_page(request, 403, detail)


async def _problem(request: Request, error: Exception) -> Response:
    assert isinstance(error, ProblemError)
    return error_page(request, error.kind.status, error.detail or error.kind.info.description)


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, StarletteHTTPException)
    return error_page(request, error.status_code, str(error.detail), dict(error.headers or {}))


async def _invalid(request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    fields = "; ".join(
        f"{'.'.join(str(part) for part in item.get('loc', ())[1:]) or 'input'}: {item['msg']}"
        for item in error.errors()
    )
    return error_page(request, 422, fields)


async def _unexpected(request: Request, _error: Exception) -> Response:
    return error_page(request, 500, "A bug on our side; nothing was saved.")


def database_failure_page(request: Request, answer: FailureAnswer) -> Response:
    """sessionwise's answer to a database failure (409, 503, 504), as a page."""
    return error_page(request, answer.status_code, answer.detail, dict(answer.headers))


def install_page_handlers(app: FastAPI) -> None:
    app.add_exception_handler(NotSignedIn, _not_signed_in)
    app.add_exception_handler(CsrfRefused, _csrf_refused)
    app.add_exception_handler(ProblemError, _problem)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(Exception, _unexpected)
