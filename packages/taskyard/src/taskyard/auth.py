"""Who is calling: ``Authorization: Bearer <api key>`` on every request under ``/api/v1``.

The key is looked up in the request's own session, so authentication costs one statement
and no second connection. Two aliases, one per kind of session the endpoint uses; FastAPI
caches a dependency per request, so the endpoint and the lookup share that session. A route
that must not hold a session for its whole life (a claim that waits) takes `Credentials`
instead and calls `authenticate` in each short session of its own.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from sessionwise import Session
from sessionwise.fastapi import ReadSessionDep, SessionDep
from taskyard.errors import ProblemError, ProblemKind
from taskyard.users.service import Caller, UserService

__all__ = ["Credentials", "CurrentReader", "CurrentUser", "authenticate"]

# auto_error=False: a missing or non-Bearer header reaches us, and we answer the 401 as a
# problem with WWW-Authenticate; it also puts the scheme into the OpenAPI document.
_bearer = HTTPBearer(auto_error=False, description="An API key from `taskyard users create`.")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
"""The ``Authorization: Bearer`` header, not checked yet (see `authenticate`)."""


async def authenticate(
    session: Session, credentials: HTTPAuthorizationCredentials | None
) -> Caller:
    if credentials is None:
        raise _unauthorized("missing `Authorization: Bearer <api key>` header", None)
    caller = await UserService(session).authenticate(credentials.credentials)
    if caller is None:
        raise _unauthorized(
            "the API key is not valid (unknown, malformed or revoked)", "invalid_token"
        )
    return caller


def _unauthorized(detail: str, error: str | None) -> ProblemError:
    challenge = "Bearer" if error is None else f'Bearer error="{error}"'
    return ProblemError(ProblemKind.UNAUTHORIZED, detail, headers={"WWW-Authenticate": challenge})


async def _writing_caller(session: SessionDep, credentials: Credentials) -> Caller:
    return await authenticate(session, credentials)


async def _reading_caller(session: ReadSessionDep, credentials: Credentials) -> Caller:
    return await authenticate(session, credentials)


CurrentUser = Annotated[Caller, Depends(_writing_caller)]
"""The caller, authenticated in the request's read-write session (`SessionDep`)."""

CurrentReader = Annotated[Caller, Depends(_reading_caller)]
"""The caller, authenticated in the request's read-only session (`ReadSessionDep`)."""
