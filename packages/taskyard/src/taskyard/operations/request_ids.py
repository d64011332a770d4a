"""``X-Request-ID``: one id per request, in its response, its log records and its problems.

A client's id is kept when it is short and plain (letters, digits and ``._:-``, at most 128
characters: UUIDs, W3C trace ids, most proxies' ids); anything else is replaced by a fresh
id, never echoed, so that the header cannot carry a client's text into logs or responses.
"""

from __future__ import annotations

import logging
import re
import uuid
from contextvars import ContextVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "REQUEST_ID_HEADER",
    "RequestIdFilter",
    "RequestIdMiddleware",
    "current_request_id",
    "valid_request_id",
]

REQUEST_ID_HEADER = "X-Request-ID"
_HEADER = REQUEST_ID_HEADER.lower().encode("latin-1")
_VALID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")

_request_id: ContextVar[str | None] = ContextVar("taskyard_request_id", default=None)


def current_request_id() -> str | None:
    """The id of the request being handled in this context, if any."""
    return _request_id.get()


def valid_request_id(raw: bytes | None) -> str:
    """*raw* if it is an acceptable id, else a new one."""
    if raw is not None and _VALID.fullmatch(raw):
        return raw.decode("ascii")
    return uuid.uuid4().hex


class RequestIdMiddleware:
    """Pure ASGI: a few dictionary operations per request, no task or body copy."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = next((value for name, value in scope["headers"] if name == _HEADER), None)
        request_id = valid_request_id(raw)
        encoded = request_id.encode("ascii")
        token = _request_id.set(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                if not any(name.lower() == _HEADER for name, _ in headers):
                    headers.append((_HEADER, encoded))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_id)
        # Reset only on the way out of a normal return: an exception goes on to Starlette's
        # outermost handler (the 500 problem), which runs after this middleware and still
        # needs the id. Each request is a task of its own under uvicorn, so nothing leaks.
        _request_id.reset(token)


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` (``-`` outside a request) to every record it sees."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = _request_id.get() or "-"
        return True
