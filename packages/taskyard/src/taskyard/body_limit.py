"""Refuse request bodies over the limit with a 413 problem, before the app reads them.

A pure ASGI middleware: a declared ``Content-Length`` over the limit is refused at once; a
chunked body (no length) is buffered up to the limit and replayed, or refused as soon as it
passes the limit. Bodies within the limit with a length pass through untouched (the server
never delivers more than ``Content-Length`` bytes).

Why not FastAPI's own limit (``FastAPI(max_body_size=...)``, 0.165: fastapi/_body_limit.py
around Starlette's ``RequestBodyLimitMiddleware``): a declared ``Content-Length`` over the
limit is refused there with Starlette's ``PlainTextResponse("Content Too Large")``, sent
from its own wrapper, not by an exception handler, on routes that read the body and on
those that do not. The 413 would then not be ``application/problem+json`` and would not
name ``body``; only a chunked body's 413 reaches the app's handlers.
tests/taskyard/test_body_limit.py shows both; when FastAPI's turns into a problem there,
this module can go.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from taskyard.errors import ProblemKind
from taskyard.problems import problem_response

__all__ = ["BodyLimitMiddleware"]


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_body_size: int) -> None:
        self.app = app
        self.max_body_size = max_body_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        declared = headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                await self._refuse(scope, receive, send, ProblemKind.INVALID_REQUEST)
            elif int(declared) > self.max_body_size:
                await self._refuse(scope, receive, send, ProblemKind.PAYLOAD_TOO_LARGE)
            else:
                await self.app(scope, receive, send)
            return
        if "chunked" not in headers.get("transfer-encoding", "").lower():
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break  # the client went away; let the app see it
            size += len(message.get("body", b""))
            if size > self.max_body_size:
                await self._refuse(scope, receive, send, ProblemKind.PAYLOAD_TOO_LARGE)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, kind: ProblemKind) -> None:
        detail = (
            f"body: larger than {self.max_body_size} bytes"
            if kind is ProblemKind.PAYLOAD_TOO_LARGE
            else "Content-Length: not a number"
        )
        # No "Connection: close": closing with the body unread makes the kernel reset the
        # connection, and the client often loses the 413 itself. The server discards the
        # rest of the body and keeps the connection (tests/faults/test_hostile_input.py).
        response = problem_response(kind, detail)
        await response(scope, receive, send)
