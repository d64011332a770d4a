"""A TCP proxy to PostgreSQL that can lose the answer to a COMMIT the server carried out.

The case idempotency keys exist for (issue 10): the COMMIT reaches PostgreSQL and commits,
but its acknowledgement never reaches the app, which sees a lost connection and answers 503.
Waiting for a database restart to land in that window is luck; this proxy makes it happen on
purpose. `LostCommitProxy.lose_next_commits(n)` arms it: the next *n* ``COMMIT`` queries
(asyncpg sends them as simple ``Query`` messages) are forwarded, the server's reply is awaited
(so the commit is durable) and dropped, and both connections are closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

from tests.support.ports import free_port

_COMMIT = b"COMMIT"


class LostCommitProxy:
    """Forwards ``127.0.0.1:<port>`` to a PostgreSQL server, in a thread of its own."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = free_port()
        self.lost = 0  # commits whose answer was dropped so far
        self._to_lose = 0
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def lose_next_commits(self, count: int) -> None:
        with self._lock:
            self._to_lose = count

    def _take_one(self) -> bool:
        with self._lock:
            if self._to_lose <= 0:
                return False
            self._to_lose -= 1
            return True

    def start(self) -> None:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._listen(), self._loop)
        self._server = future.result(timeout=10)

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for writer in list(self._writers):
                await _close(writer)
            if self._server is not None:
                await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _listen(self) -> asyncio.Server:
        return await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self._writers.add(client_w)
        try:
            server_r, server_w = await asyncio.open_connection(*self.upstream)
        except OSError:
            await self._forget(client_w)
            return
        self._writers.add(server_w)
        lose = asyncio.Event()
        try:
            await _start_up(client_r, client_w, server_r, server_w)
        except (OSError, asyncio.IncompleteReadError):
            await self._forget(client_w, server_w)
            return

        async def client_to_server() -> None:
            while True:
                kind = await client_r.readexactly(1)
                length = int.from_bytes(await client_r.readexactly(4), "big")
                payload = await client_r.readexactly(length - 4)
                server_w.write(kind + length.to_bytes(4, "big") + payload)
                await server_w.drain()
                if (
                    kind == b"Q"
                    and payload.strip(b"\x00; ").upper() == _COMMIT
                    and self._take_one()
                ):
                    lose.set()
                    return

        async def server_to_client() -> None:
            while True:
                kind = await server_r.readexactly(1)
                length = int.from_bytes(await server_r.readexactly(4), "big")
                payload = await server_r.readexactly(length - 4)
                if lose.is_set():
                    # The reply to the COMMIT: it committed. Drop it and the connection.
                    if kind == b"Z":  # ReadyForQuery: the server is done with the COMMIT
                        self.lost += 1
                        return
                    continue
                client_w.write(kind + length.to_bytes(4, "big") + payload)
                await client_w.drain()

        tasks = [asyncio.create_task(client_to_server()), asyncio.create_task(server_to_client())]
        with contextlib.suppress(Exception):
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            if lose.is_set():
                await tasks[1]  # wait for the server's answer before hanging up
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._forget(client_w, server_w)

    async def _forget(self, *writers: asyncio.StreamWriter) -> None:
        for writer in writers:
            self._writers.discard(writer)
            await _close(writer)


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()


_SSL_REQUEST, _GSSENC_REQUEST = 80877103, 80877104


async def _start_up(
    client_r: asyncio.StreamReader,
    client_w: asyncio.StreamWriter,
    server_r: asyncio.StreamReader,
    server_w: asyncio.StreamWriter,
) -> None:
    """Relay the untyped startup packets; an SSL or GSSAPI request gets the server's 1 byte."""
    while True:
        length = int.from_bytes(await client_r.readexactly(4), "big")
        body = await client_r.readexactly(length - 4)
        server_w.write(length.to_bytes(4, "big") + body)
        await server_w.drain()
        if int.from_bytes(body[:4], "big") not in (_SSL_REQUEST, _GSSENC_REQUEST):
            return  # the StartupMessage: from here on, every message is type + length
        answer = await server_r.readexactly(1)
        if answer != b"N":
            raise OSError("the proxy cannot relay an encrypted connection")
        client_w.write(answer)
        await client_w.drain()


@contextlib.contextmanager
def lost_commit_proxy(upstream_host: str, upstream_port: int) -> Iterator[LostCommitProxy]:
    proxy = LostCommitProxy(upstream_host, upstream_port)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()
