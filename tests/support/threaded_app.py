"""taskyard served by uvicorn in a thread of the test process, over real loopback HTTP.

For browser tests: a real server (real sockets, the app's real lifespan, uvicorn's access log)
without starting two Python processes on a loaded machine. The server thread runs one event
loop for everything it does: migrating, creating the users, serving. The main thread stays
free of event loops, so Playwright's sync API can run there.

Every log record of the served app (uvicorn's access log included) is kept, so tests can
check what must never be logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import uvicorn

from taskyard.app import create_app, create_database
from taskyard.migrate import upgrade
from taskyard.settings import Settings
from taskyard.users.schemas import UserCreate
from taskyard.users.service import UserService
from tests.support.ports import free_port
from tests.support.served_app import User

__all__ = ["ThreadedApp", "serve_in_thread"]

STARTUP_TIMEOUT = 60.0


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@dataclass
class ThreadedApp:
    base_url: str
    users: list[User] = field(default_factory=list)
    _records: _Records = field(default_factory=_Records)

    @property
    def user(self) -> User:
        return self.users[0]

    def log(self) -> str:
        return "\n".join(self._records.lines)


async def _prepare(settings: Settings, names: tuple[str, ...]) -> list[User]:
    async with create_database(settings) as db:
        await upgrade(db)
        users = []
        for name in names:
            email = f"{name}-{uuid.uuid4().hex[:6]}@example.test"
            async with db.session() as session:
                _, issued = await UserService(session).create_user(
                    UserCreate(email=email, name=name)
                )
            users.append(User(email=email, name=name, api_key=issued.api_key))
        return users


@contextlib.contextmanager
def serve_in_thread(database_url: str, *users: str) -> Iterator[ThreadedApp]:
    """The app on a free loopback port, migrated, with one user (and key) per name."""
    port = free_port()
    settings = Settings(database_url=database_url)
    app = ThreadedApp(base_url=f"http://127.0.0.1:{port}")
    # ws="none": no websockets import (and its deprecation warnings); the board needs none.
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, ws="none", log_config=None
    )
    server = uvicorn.Server(config)
    failure: list[BaseException] = []

    async def run() -> None:
        app.users.extend(await _prepare(settings, users or ("owner",)))
        await server.serve()

    def target() -> None:
        try:
            asyncio.run(run())
        except BaseException as error:  # reported to the test below, not lost in the thread
            failure.append(error)

    loggers = [
        logging.getLogger(name)
        for name in ("uvicorn.error", "uvicorn.access", "taskyard", "sessionwise")
    ]
    previous = [(logger.level, logger.propagate) for logger in loggers]
    for logger in loggers:
        logger.addHandler(app._records)
        logger.setLevel(logging.INFO)
    thread = threading.Thread(target=target, name=f"taskyard-{port}", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not server.started and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        if failure:
            raise AssertionError(f"the threaded server failed to start: {failure[0]!r}")
        if not server.started:
            raise AssertionError(f"the threaded server did not start in {STARTUP_TIMEOUT}s")
        yield app
    finally:
        server.should_exit = True
        thread.join(30)
        for logger, (level, propagate) in zip(loggers, previous, strict=True):
            logger.removeHandler(app._records)
            logger.setLevel(level)
            logger.propagate = propagate
    if failure:
        raise AssertionError(f"the threaded server failed: {failure[0]!r}")
