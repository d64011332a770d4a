"""Streaming a large result to the client from a session the response owns.

The request's session (`SessionDep`, `ReadSessionDep`) ends before the response is sent:
that is what makes the commit the answer. A ``StreamingResponse`` reading
``await session.stream(...)`` of it would read from a cursor whose transaction is over;
PostgreSQL then delivers the first buffered rows and stops, with status 200 (issue 17.2).
The dependencies refuse that (`OpenStreamError`, before the first byte), and this response is
the supported way: it opens its own session when the body starts, hands it to an async
generator function, and closes it when the body ends.

The session's lifetime lives in the response's ``__call__`` (``async with`` there), not in a
generator's ``finally``: Starlette's `BaseHTTPMiddleware` abandons the body generator of a
client that disconnects and never runs its ``finally`` (issue 17.3), so cleanup that relies
on it leaks the connection and leaves the backend ``idle in transaction``. ``__call__`` is
cancelled like any coroutine, and the session's close is shielded.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

import anyio
from starlette.background import BackgroundTask
from starlette.requests import ClientDisconnect
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from sessionwise.database import Database
from sessionwise.session_class import Session

__all__ = ["SessionStreamingResponse"]

Chunk = str | bytes | memoryview


class _ClientGone(Exception):
    """The client disconnected: leave the session's block by an error, so it rolls back."""


class SessionStreamingResponse(StreamingResponse):
    """A streaming response whose body reads from a session of its own.

    The session opens when the response starts, before the first byte: an error opening the
    stream or producing the first chunk is an ordinary error answer (500, or 503 for a pool
    timeout), not a truncated 200. It closes exactly when the body ends: on completion (a
    write session commits then), on an error mid-body (rolled back; the connection to the
    client is dropped, so the client sees an incomplete body, never a clean short one), and
    when the client disconnects (rolled back), also behind `BaseHTTPMiddleware`.

    Args:
        db: The `Database` to take the session from.
        body: ``async def body(session) -> AsyncIterator[str | bytes]``: an async generator
            function that receives the session and yields the chunks.
        read_only: A `Database.read_session` (the default; never commits), or, with
            ``False``, a `Database.session` that commits when the body has been sent.
        status_code: The response status.
        headers: Extra response headers.
        media_type: The content type, e.g. ``"text/csv"``.
        background: A task to run after the body was sent and the session closed.

    Example:
        >>> @app.get("/export.csv")
        ... async def export(db: DatabaseDep) -> SessionStreamingResponse:
        ...     async def rows(session: AsyncSession) -> AsyncIterator[str]:
        ...         result = await session.stream(select(Task.id, Task.title))
        ...         async for task_id, title in result:
        ...             yield f"{task_id},{title}\\n"
        ...     return SessionStreamingResponse(db, rows, media_type="text/csv")
    """

    def __init__(
        self,
        db: Database[Any],
        body: Callable[[Session], AsyncIterable[Chunk]],
        *,
        read_only: bool = True,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
        background: BackgroundTask | None = None,
    ) -> None:
        self._db = db
        self._body = body
        self._read_only = read_only
        self.status_code = status_code
        self.media_type = self.media_type if media_type is None else media_type
        self.background = background
        self.init_headers(headers)

    def _open(self) -> AbstractAsyncContextManager[Session]:
        return self._db.read_session() if self._read_only else self._db.session()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        spec_version = tuple(map(int, scope.get("asgi", {}).get("spec_version", "2.0").split(".")))
        try:
            async with self._open() as session:
                chunks = aiter(self._body(session))
                try:
                    first = await anext(chunks, None)
                    if spec_version >= (2, 4):
                        # ASGI 2.4: a send after the client left raises OSError (Starlette
                        # does the same in StreamingResponse).
                        try:
                            await self._send_body(send, first, chunks)
                        except OSError:
                            raise ClientDisconnect() from None
                    else:
                        await self._send_until_disconnect(receive, send, first, chunks)
                finally:
                    # The generator's own cleanup (closing its result) runs here, also when
                    # this call is cancelled; then the session closes (shielded as well).
                    aclose = getattr(chunks, "aclose", None)
                    if aclose is not None:
                        with anyio.CancelScope(shield=True):
                            await aclose()
        except _ClientGone:
            return  # rolled back and closed; there is no one to answer
        if self.background is not None:
            await self.background()

    async def _send_until_disconnect(
        self, receive: Receive, send: Send, first: Chunk | None, chunks: AsyncIterator[Chunk]
    ) -> None:
        # ASGI < 2.4 says nothing on send when the client is gone: watch for http.disconnect
        # beside the body, which runs in this task (the one that owns the session).
        disconnected = False
        try:
            async with anyio.create_task_group() as group:

                async def watch() -> None:
                    nonlocal disconnected
                    await self.listen_for_disconnect(receive)
                    disconnected = True
                    group.cancel_scope.cancel()

                group.start_soon(watch)
                await self._send_body(send, first, chunks)
                group.cancel_scope.cancel()
        except BaseExceptionGroup as errors:
            # The body's own error, not a group of one (as Starlette's collapse_excgroups).
            error: BaseException = errors
            while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
                error = error.exceptions[0]
            raise error from None
        if disconnected:
            raise _ClientGone

    async def _send_body(
        self, send: Send, first: Chunk | None, chunks: AsyncIterator[Chunk]
    ) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        chunk = first
        while chunk is not None:
            if isinstance(chunk, str):
                chunk = chunk.encode(self.charset)
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            chunk = await anext(chunks, None)
        await send({"type": "http.response.body", "body": b"", "more_body": False})
