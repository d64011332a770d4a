"""RFC 9457 problem details (``application/problem+json``) for every error the API returns.

Each kind of error has a stable ``type`` URI, ``/problems/<kind>``, relative to the API's
origin; ``GET /problems/<kind>`` describes it. Clients branch on ``type``, never on
``detail``. Validation problems list the offending fields in ``errors``. Every problem names
its request's ``request_id`` (`taskyard.operations.request_ids`), the id to quote to an
operator, and carries it as ``X-Request-ID`` too: the 500 answer is sent from outside the
middleware that adds the header to every other response.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from sessionwise.fastapi import FailureAnswer
from taskyard.errors import KIND_BY_STATUS, FieldError, ProblemError, ProblemKind
from taskyard.operations.request_ids import REQUEST_ID_HEADER, current_request_id

__all__ = [
    "PROBLEM_MEDIA_TYPE",
    "Problem",
    "database_problem",
    "install_problem_handlers",
    "problem_response",
    "problem_responses",
]

PROBLEM_MEDIA_TYPE = "application/problem+json"


class Problem(BaseModel):
    """An RFC 9457 problem details object."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="Stable URI of the error kind, e.g. /problems/not-found.")
    title: str
    status: int
    detail: str | None = None
    errors: list[FieldError] | None = None
    request_id: str | None = Field(
        default=None, description="The request's X-Request-ID, to quote to an operator."
    )


def problem_response(
    kind: ProblemKind,
    detail: str | None = None,
    *,
    status: int | None = None,
    headers: Mapping[str, str] | None = None,
    errors: Sequence[FieldError] | None = None,
    extensions: Mapping[str, Any] | None = None,
) -> JSONResponse:
    info = kind.info
    body: dict[str, Any] = {
        "type": kind.uri,
        "title": info.title,
        "status": status or info.status,
        "detail": detail or info.description,
    }
    if errors is not None:
        body["errors"] = [error.model_dump(by_alias=True) for error in errors]
    if extensions:
        body.update(extensions)
    request_id = current_request_id()
    if request_id is not None:
        body["request_id"] = request_id
        headers = {**(headers or {}), REQUEST_ID_HEADER: request_id}
    return JSONResponse(
        body, status_code=status or info.status, headers=headers, media_type=PROBLEM_MEDIA_TYPE
    )


def _location_and_field(loc: Sequence[int | str]) -> tuple[str, str]:
    if not loc:
        return "body", "body"
    location = str(loc[0])
    names = [str(part) for part in loc[1:]]
    if location == "body" and (not names or (isinstance(loc[-1], int) and len(loc) == 2)):
        return "body", "body"  # the body as a whole (missing, or not JSON at that offset)
    return location, ".".join(names) or location


def field_errors(error: RequestValidationError) -> list[FieldError]:
    result = []
    for item in error.errors():
        location, field = _location_and_field(item.get("loc", ()))
        result.append(FieldError(field=field, location=location, message=str(item["msg"])))
    return result


async def _on_validation_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    errors = field_errors(error)
    summary = "; ".join(f"{e.field}: {e.message}" for e in errors)
    if any(item.get("type") == "json_invalid" for item in error.errors()):
        return problem_response(
            ProblemKind.MALFORMED_JSON, f"body: not valid JSON ({summary})", errors=errors
        )
    return problem_response(ProblemKind.VALIDATION_ERROR, summary, errors=errors)


async def _on_problem(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, ProblemError)
    return problem_response(
        error.kind,
        error.detail,
        headers=error.headers,
        errors=error.errors,
        extensions=error.extensions,
    )


_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def _allowed_methods(request: Request) -> str:
    # Starlette's 405 names the methods of the first route that matched the path only; a
    # resource served by several routes (GET and POST /tasks) allows all of theirs. They are
    # read from the OpenAPI document, which is what clients check the header against. A
    # literal path (/tasks/claim) is that resource, not an instance of /tasks/{task_id}.
    paths: dict[str, dict[str, Any]] = request.app.openapi()["paths"]
    path = request.scope["path"]
    operations = paths.get(path)
    if operations is None:
        operations = {}
        for template, candidate in paths.items():
            if re.fullmatch(re.sub(r"\{[^/]+\}", "[^/]+", template), path):
                operations |= candidate
    return ", ".join(sorted(method.upper() for method in operations if method in _METHODS))


async def _on_http_exception(request: Request, error: Exception) -> JSONResponse:
    # Starlette's own errors (404 for unknown paths, 405, 413) arrive here; their headers are
    # kept.
    assert isinstance(error, StarletteHTTPException)
    kind = KIND_BY_STATUS.get(error.status_code)
    if kind is None:
        kind = (
            ProblemKind.INVALID_REQUEST if error.status_code < 500 else ProblemKind.INTERNAL_ERROR
        )
    headers = dict(error.headers or {})
    if error.status_code == 405:
        headers["Allow"] = _allowed_methods(request) or headers.get("Allow", "")
    return problem_response(kind, str(error.detail), status=error.status_code, headers=headers)


_DATABASE_KINDS = {
    409: ProblemKind.CONFLICT,
    503: ProblemKind.SERVICE_UNAVAILABLE,
    504: ProblemKind.DATABASE_TIMEOUT,
}


def database_problem(_request: Request, answer: FailureAnswer) -> JSONResponse:
    """sessionwise's answer to a database failure (409, 503 + Retry-After, 504) as a problem."""
    kind = _DATABASE_KINDS.get(answer.status_code, ProblemKind.INTERNAL_ERROR)
    return problem_response(kind, answer.detail, status=answer.status_code, headers=answer.headers)


async def _on_unexpected(_request: Request, error: Exception) -> JSONResponse:
    # The traceback is logged by the server; the client learns nothing about internals.
    return problem_response(ProblemKind.INTERNAL_ERROR)


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(ProblemError, _on_problem)
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)
    app.add_exception_handler(Exception, _on_unexpected)


def _problem_content(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries documenting problem answers with these statuses."""
    return {status: _problem_content(KIND_BY_STATUS[status].info.title) for status in statuses}


class ProblemKindRead(BaseModel):
    type: str
    status: int
    title: str
    description: str


def describe(kind: ProblemKind) -> ProblemKindRead:
    info = kind.info
    return ProblemKindRead(
        type=kind.uri, status=info.status, title=info.title, description=info.description
    )
