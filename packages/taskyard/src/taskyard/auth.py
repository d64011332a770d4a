"""Who is calling: ``Authorization: Bearer <api key>`` on every request under ``/api/v1``.

The key is looked up in the request's own session, so authentication costs one statement
and no second connection. Two aliases, one per kind of session the endpoint uses; FastAPI
caches a dependency per request, so the endpoint and the lookup share that session. A route
that must not hold a session for its whole life (a claim that waits) takes
`CallerWithoutSession`: the key is looked up in a short read session on the primary that
ends before the endpoint runs.

With read replicas the reader's lookup runs on the primary instead (a short session of its
own, closed before the read starts): a replica that has not replayed a revocation would still
accept the key. The same statement reads the key's read-your-writes position, and the
request's read session is sent where that position is replayed (`taskyard.read_your_writes`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from sessionwise import Session
from sessionwise.fastapi import DatabaseDep, ReadSessionDep, SessionDep
from sessionwise.replicas import WalPosition, is_routed, read_at_least
from taskyard.errors import ProblemError, ProblemKind
from taskyard.read_your_writes import remember_write
from taskyard.users.service import Caller, UserService

__all__ = ["CallerWithoutSession", "CurrentReader", "CurrentUser"]

# auto_error=False: a missing or non-Bearer header reaches us, and we answer the 401 as a
# problem with WWW-Authenticate; it also puts the scheme into the OpenAPI document.
_bearer = HTTPBearer(auto_error=False, description="An API key from `taskyard users create`.")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


async def _authenticate(
    session: Session,
    credentials: HTTPAuthorizationCredentials | None,
    *,
    with_position: bool = False,
) -> Caller:
    if credentials is None:
        raise _unauthorized("missing `Authorization: Bearer <api key>` header", None)
    service = UserService(session)
    caller = await service.authenticate(credentials.credentials, with_position=with_position)
    if caller is None:
        raise _unauthorized(
            "the API key is not valid (unknown, malformed or revoked)", "invalid_token"
        )
    return caller


def _unauthorized(detail: str, error: str | None) -> ProblemError:
    challenge = "Bearer" if error is None else f'Bearer error="{error}"'
    return ProblemError(ProblemKind.UNAUTHORIZED, detail, headers={"WWW-Authenticate": challenge})


async def _writing_caller(db: DatabaseDep, session: SessionDep, credentials: Credentials) -> Caller:
    caller = await _authenticate(session, credentials)
    if db.replicated:
        remember_write(db, session, caller.key_id)
    return caller


async def _reading_caller(
    db: DatabaseDep, session: ReadSessionDep, credentials: Credentials
) -> Caller:
    if not is_routed(session):  # no replicas (or the route's write session): one session
        return await _authenticate(session, credentials)
    async with db.read_session(on_primary=True) as primary:
        caller = await _authenticate(primary, credentials, with_position=True)
    if caller.read_after_lsn is not None:
        read_at_least(session, WalPosition(caller.read_after_lsn))
    return caller


CurrentUser = Annotated[Caller, Depends(_writing_caller)]
"""The caller, authenticated in the request's read-write session (`SessionDep`)."""

CurrentReader = Annotated[Caller, Depends(_reading_caller)]
"""The caller, authenticated in the request's read-only session (`ReadSessionDep`)."""


async def _caller_without_session(db: DatabaseDep, credentials: Credentials) -> Caller:
    # A plain dependency, not a yield one: the session is closed (its connection back in the
    # pool) before the endpoint starts. Resolved before the endpoint's other dependencies,
    # like CurrentUser, so that a request without a valid key is a 401 before anything else.
    # On the primary: a replica that has not replayed a revocation would accept the key.
    async with db.read_session(on_primary=True) as session:
        return await _authenticate(session, credentials)


CallerWithoutSession = Annotated[Caller, Depends(_caller_without_session)]
"""The caller, authenticated in a short read session of its own that ends before the
endpoint runs: for routes that hold no session (a claim that waits)."""
