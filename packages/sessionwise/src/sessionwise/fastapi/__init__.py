"""FastAPI adapter: one session per request, committed before the response is sent.

The adapter is thin: `sessionwise.fastapi.dependencies` holds the request's session
dependencies, `sessionwise.fastapi.streaming` the response that streams from a session of its
own, `sessionwise.fastapi.errors` the exception handlers that answer database failures (409,
503 with ``Retry-After``, 504), which `Database.lifespan` installs.
"""

from sessionwise.fastapi.dependencies import (
    AsyncReadSessionDep,
    AsyncSessionDep,
    DatabaseDep,
    DatabaseDependencies,
    ReadSessionDep,
    SessionDep,
    database_dependencies,
    get_database,
)
from sessionwise.fastapi.errors import FailureAnswer, Render, answer_for, install_error_handlers
from sessionwise.fastapi.streaming import SessionStreamingResponse

__all__ = [
    "AsyncReadSessionDep",
    "AsyncSessionDep",
    "DatabaseDep",
    "DatabaseDependencies",
    "FailureAnswer",
    "ReadSessionDep",
    "Render",
    "SessionDep",
    "SessionStreamingResponse",
    "answer_for",
    "database_dependencies",
    "get_database",
    "install_error_handlers",
]
