"""FastAPI adapter: one session per request, committed before the response is sent.

The adapter is thin: `sessionwise.fastapi.dependencies` holds the request's session
dependencies, `sessionwise.fastapi.streaming` the response that streams from a session of its
own, `sessionwise.fastapi.errors` how database failures are answered.
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
from sessionwise.fastapi.errors import http_error_for
from sessionwise.fastapi.streaming import SessionStreamingResponse

__all__ = [
    "AsyncReadSessionDep",
    "AsyncSessionDep",
    "DatabaseDep",
    "DatabaseDependencies",
    "ReadSessionDep",
    "SessionDep",
    "SessionStreamingResponse",
    "database_dependencies",
    "get_database",
    "http_error_for",
]
