"""FastAPI adapter: one session per request, committed before the response is sent.

The adapter is thin: `sessionwise.fastapi.dependencies` holds the request's session
dependencies, `sessionwise.fastapi.errors` how database failures are answered.
"""

from sessionwise.fastapi.dependencies import DatabaseDep, ReadSessionDep, SessionDep, get_database
from sessionwise.fastapi.errors import http_error_for

__all__ = ["DatabaseDep", "ReadSessionDep", "SessionDep", "get_database", "http_error_for"]
