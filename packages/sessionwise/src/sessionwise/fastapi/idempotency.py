"""FastAPI side of idempotency keys (`sessionwise.idempotency` holds the mechanism).

Wire it up once, then use `IdempotencyDep` in each POST that should take effect once::

    store = IdempotencyStore(idempotency_table(Base.metadata))
    use_idempotency(app, store)  # and install_idempotency_handlers(app), or your own

    @app.post("/orders", status_code=201)
    async def create_order(data: OrderIn, session: SessionDep, user: CurrentUser,
                           idempotency: IdempotencyDep) -> OrderOut | Response:
        if (replay := await idempotency.replay(session, scope=user.id)) is not None:
            return replay                    # the stored answer, with Idempotency-Replayed
        order = await place(session, data)
        return await idempotency.answer(order, status_code=201, headers={"Location": ...})

Without the header nothing changes: `replay` returns None without a statement and `answer`
returns *content* for FastAPI to serialize as usual. With it, `replay` costs one statement
(the lookup) and `answer` one more (the record, in the request's transaction, committed by
`SessionDep` together with the effect).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, TypeVar, overload

from fastapi import Depends, FastAPI, Header, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from sessionwise.exceptions import DatabaseStateError
from sessionwise.idempotency import (
    IDEMPOTENCY_KEY_HEADER,
    REPLAYED_HEADER,
    IdempotencyError,
    IdempotencyKeyInUseError,
    IdempotencyKeyReusedError,
    IdempotencyStore,
    InvalidIdempotencyKeyError,
    KeyedRequest,
    StoredAnswer,
    parse_idempotency_key,
    request_fingerprint,
)

__all__ = [
    "IDEMPOTENCY_KEY_PATTERN",
    "IdempotencyDep",
    "IdempotentRequest",
    "idempotency_error_answer",
    "install_idempotency_handlers",
    "use_idempotency",
]

IDEMPOTENCY_KEY_PATTERN = r'^"([\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\]){1,255}"$'
"""What `parse_idempotency_key` accepts, as a regular expression (for the OpenAPI schema)."""

RETRY_IN_USE_AFTER = 1
"""Seconds in ``Retry-After`` of a 409: the first request with the key is still running."""

_STATE_KEY = "sessionwise_idempotency"
_Model = TypeVar("_Model", bound=BaseModel)


def use_idempotency(app: FastAPI, store: IdempotencyStore) -> None:
    """Make *store* the one `IdempotencyDep` uses on *app* (``app.state``)."""
    setattr(app.state, _STATE_KEY, store)


class IdempotentRequest:
    """One request's idempotency: its key (or None), the lookup, and the stored answer."""

    def __init__(self, request: Request, response: Response, key: str | None) -> None:
        self.key = key
        self._request = request
        self._response = response
        self._session: AsyncSession | None = None
        self._keyed: KeyedRequest | None = None

    def _store(self) -> IdempotencyStore:
        store = getattr(self._request.app.state, _STATE_KEY, None)
        if not isinstance(store, IdempotencyStore):
            raise DatabaseStateError(
                "no IdempotencyStore on app.state: call "
                "`sessionwise.fastapi.idempotency.use_idempotency(app, store)` in create_app"
            )
        return store

    async def replay(self, session: AsyncSession, *, scope: str | int) -> Response | None:
        """The stored answer to replay, or None: go ahead, then return `answer(...)`.

        Without a key: None, and no statement. With one: one statement in *session*.

        Args:
            session: The request's session (`SessionDep`), whose transaction the effect uses.
            scope: Whose key it is, e.g. the authenticated user's id.

        Raises:
            IdempotencyKeyReusedError: the key was used for a different request (422).
            IdempotencyKeyInUseError: a request with the key is still running (409).
        """
        if self.key is None:
            return None
        request = self._request
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        fingerprint = request_fingerprint(request.method, target, await request.body())
        self._keyed = KeyedRequest(scope=str(scope), key=self.key, fingerprint=fingerprint)
        self._session = session
        stored = await self._store().lookup(session, self._keyed)
        if stored is None:
            return None
        return Response(
            content=stored.body,
            status_code=stored.status,
            headers={**stored.headers, REPLAYED_HEADER: "true"},
        )

    @overload
    async def answer(
        self, content: None, *, status_code: int, headers: Mapping[str, str] | None = None
    ) -> Response: ...

    @overload
    async def answer(
        self, content: _Model, *, status_code: int, headers: Mapping[str, str] | None = None
    ) -> _Model | Response: ...

    async def answer(
        self,
        content: BaseModel | None,
        *,
        status_code: int,
        headers: Mapping[str, str] | None = None,
    ) -> BaseModel | Response:
        """The endpoint's answer; with a key, also stored in the request's transaction.

        Without a key: *headers* go onto the response and *content* is returned for FastAPI
        to serialize (``None``: an empty answer with *status_code*). With a key: the answer
        is serialized here, stored (one statement) and returned as a `Response`.
        """
        headers = dict(headers or {})
        if self._keyed is None:
            if self.key is not None:
                raise RuntimeError("call `await idempotency.replay(...)` before `answer(...)`")
            if content is None:
                return Response(status_code=status_code, headers=headers)
            self._response.headers.update(headers)
            return content
        body = b""
        if content is not None:
            body = content.model_dump_json(by_alias=True).encode()
            headers["content-type"] = "application/json"
        assert self._session is not None
        await self._store().save(
            self._session, self._keyed, StoredAnswer(status_code, body, headers)
        )
        return Response(content=body, status_code=status_code, headers=headers)


async def _idempotent_request(
    request: Request,
    response: Response,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias=IDEMPOTENCY_KEY_HEADER,
            description=(
                "Optional. A unique value per operation, as a quoted string (RFC 8941 "
                'sf-string, 1-255 printable ASCII characters), e.g. "6f1c0a3e-...". A retry '
                "with the same key and the same request gets the first answer again "
                f"(`{REPLAYED_HEADER}: true`) instead of a second effect."
            ),
            # Documented, not enforced by FastAPI: a bad key is a 400 naming the header
            # (the draft), not a 422 of request validation.
            json_schema_extra={"pattern": IDEMPOTENCY_KEY_PATTERN},
        ),
    ] = None,
) -> IdempotentRequest:
    if idempotency_key is None:
        return IdempotentRequest(request, response, None)
    if len(request.headers.getlist(IDEMPOTENCY_KEY_HEADER)) > 1:
        raise InvalidIdempotencyKeyError(f"{IDEMPOTENCY_KEY_HEADER}: send the header once")
    return IdempotentRequest(request, response, parse_idempotency_key(idempotency_key))


IdempotencyDep = Annotated[IdempotentRequest, Depends(_idempotent_request)]
"""The request's `IdempotentRequest`, from its optional ``Idempotency-Key`` header."""


def idempotency_error_answer(error: IdempotencyError) -> tuple[int, dict[str, str]]:
    """The HTTP status and headers the draft gives *error*: 400, 422, or 409 + Retry-After."""
    if isinstance(error, InvalidIdempotencyKeyError):
        return 400, {}
    if isinstance(error, IdempotencyKeyReusedError):
        return 422, {}
    if isinstance(error, IdempotencyKeyInUseError):
        return 409, {"Retry-After": str(RETRY_IN_USE_AFTER)}
    return 500, {}


async def _on_idempotency_error(_request: Request, error: Exception) -> Response:
    assert isinstance(error, IdempotencyError)
    status, headers = idempotency_error_answer(error)
    return JSONResponse({"detail": str(error)}, status_code=status, headers=headers)


def install_idempotency_handlers(app: FastAPI) -> None:
    """Answer idempotency errors as ``{"detail": ...}`` with the draft's status codes.

    An app with its own error format registers its own handler for `IdempotencyError`
    instead, using `idempotency_error_answer` for the status and headers.
    """
    app.add_exception_handler(IdempotencyError, _on_idempotency_error)
