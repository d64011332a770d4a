"""How the FastAPI adapter answers database failures (409, 503 with Retry-After, 504)."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import HTTPException
from sqlalchemy.exc import SQLAlchemyError

from sessionwise.database import Database
from sessionwise.errors import Failure, classify

__all__ = ["failures_as_http_errors", "http_error_for"]

_STATUS = {
    Failure.POOL_EXHAUSTED: (503, "database busy: no connection became free in time"),
    Failure.UNAVAILABLE: (503, "database unavailable"),
    Failure.LOCKED: (503, "database busy: a write lock was not granted in time"),
    Failure.CONFLICT: (503, "transaction conflict with a concurrent request"),
    Failure.TIMEOUT: (504, "database statement timed out"),
    Failure.INTEGRITY: (409, "the change conflicts with existing data"),
}


def http_error_for(error: BaseException, db: Database) -> HTTPException | None:
    """The HTTP answer for a database failure, or None when it is not one we can name."""
    failure = classify(error)
    if failure not in _STATUS:
        return None
    status, detail = _STATUS[failure]
    headers = None
    if status >= 500:
        headers = {"Retry-After": str(max(1, math.ceil(db.config.pool_timeout)))}
    return HTTPException(status_code=status, detail=detail, headers=headers)


@asynccontextmanager
async def failures_as_http_errors(db: Database) -> AsyncIterator[None]:
    try:
        yield
    except (SQLAlchemyError, OSError) as error:
        http_error = http_error_for(error, db)
        if http_error is None:
            raise
        raise http_error from error
