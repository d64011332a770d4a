"""FastAPI adapter: one session per request, committed before the response is sent.

The adapter is thin: `sessionwise.fastapi.dependencies` holds the request's session
dependencies, `sessionwise.fastapi.errors` the exception handlers that answer database
failures (409, 503 with ``Retry-After``, 504), which `Database.lifespan` installs.
"""

from sessionwise.fastapi.dependencies import DatabaseDep, ReadSessionDep, SessionDep, get_database
from sessionwise.fastapi.errors import FailureAnswer, Render, answer_for, install_error_handlers

__all__ = [
    "DatabaseDep",
    "FailureAnswer",
    "ReadSessionDep",
    "Render",
    "SessionDep",
    "answer_for",
    "get_database",
    "install_error_handlers",
]
