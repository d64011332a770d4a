"""Idempotency keys on taskyard's creating POSTs (sessionwise.idempotency does the work).

The table joins taskyard's metadata (and so its migrations); the store's retention comes from
`Settings`; errors are answered as problems; expired records are purged by ``taskyard purge``
and, in the server, by `purge_periodically` from the lifespan.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from sessionwise import Database
from sessionwise.fastapi.idempotency import idempotency_error_answer, use_idempotency
from sessionwise.idempotency import (
    IDEMPOTENCY_KEY_HEADER,
    IdempotencyError,
    IdempotencyKeyInUseError,
    IdempotencyKeyReusedError,
    IdempotencyStore,
    InvalidIdempotencyKeyError,
    idempotency_table,
)
from taskyard.errors import FieldError, ProblemKind
from taskyard.problems import problem_response, problem_responses
from taskyard.settings import Settings
from taskyard.tables import metadata

__all__ = [
    "create_store",
    "describe_retention",
    "idempotency_keys",
    "idempotent",
    "install_idempotency",
    "purge_periodically",
    "purging",
]

logger = logging.getLogger("taskyard")

idempotency_keys = idempotency_table(metadata)

_REPLAYED = {
    "Idempotency-Replayed": {
        "description": "`true` when this is the stored answer to an earlier request with the "
        "same `Idempotency-Key`",
        "schema": {"type": "string", "enum": ["true"]},
    }
}


def idempotent(*statuses: int, **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries of an operation taking `Idempotency-Key` whose answers are *statuses*.

    The replay header on each, and the 409 of a key in use (400 and 422 every operation
    documents already). *descriptions*, as ``s204="..."``, describe a status.
    """
    entries: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        entries[status] = {"headers": _REPLAYED}
        if f"s{status}" in descriptions:
            entries[status]["description"] = descriptions[f"s{status}"]
    return {**entries, **problem_responses(409)}


def create_store(settings: Settings) -> IdempotencyStore:
    return IdempotencyStore(
        idempotency_keys, retention=timedelta(hours=settings.idempotency_retention_hours)
    )


def describe_retention(settings: Settings) -> str:
    """The promise published in the OpenAPI description."""
    hours = f"{settings.idempotency_retention_hours:g}"
    return (
        f"`POST /tasks`, `/tasks/claim`, `/tasks/complete`, `/tasks/{{id}}/complete`, `/fail` "
        "and `/retry`, "
        "`/projects` and `/workers` accept an optional "
        f'`{IDEMPOTENCY_KEY_HEADER}: "<unique value>"` header. A retry with the same key and '
        "the same request (method, path and body) gets the first answer again, marked "
        "`Idempotency-Replayed: true`, instead of a second effect; the same key with a "
        "different request is a 422, and while the first request is still running a 409 "
        f"with `Retry-After`. Keys belong to the API key's user and are kept for {hours} "
        "hours after their request; only successful answers are stored."
    )


async def _on_idempotency_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, IdempotencyError)
    _status, headers = idempotency_error_answer(error)
    if isinstance(error, IdempotencyKeyInUseError):
        return problem_response(ProblemKind.IDEMPOTENCY_KEY_IN_USE, str(error), headers=headers)
    if isinstance(error, IdempotencyKeyReusedError):
        return problem_response(ProblemKind.IDEMPOTENCY_KEY_REUSED, str(error))
    assert isinstance(error, InvalidIdempotencyKeyError)
    message = str(error).removeprefix(f"{IDEMPOTENCY_KEY_HEADER}: ")
    return problem_response(
        ProblemKind.INVALID_REQUEST,
        str(error),
        errors=[FieldError(field=IDEMPOTENCY_KEY_HEADER, location="header", message=message)],
    )


def install_idempotency(app: FastAPI, settings: Settings) -> IdempotencyStore:
    """The store for `IdempotencyDep`, and problem answers for its errors."""
    store = create_store(settings)
    use_idempotency(app, store)
    app.add_exception_handler(IdempotencyError, _on_idempotency_error)
    return store


async def purge_periodically(db: Database, store: IdempotencyStore, interval: float) -> None:
    """Purge expired records every *interval* seconds until cancelled; failures are logged.

    Each batch runs in a session of its own, off the request path: a request waits for a
    purge batch at most as long as for any other short write.
    """
    while True:
        await anyio.sleep(interval)
        try:
            await store.purge(db)
        except Exception:  # logged, and tried again next time: the server must keep serving
            logger.exception("purging expired idempotency records failed")


@contextlib.asynccontextmanager
async def purging(db: Database, store: IdempotencyStore, interval: float) -> AsyncIterator[None]:
    """`purge_periodically` in the background while the block runs (the server's lifespan).

    A plain task rather than a task group around the lifespan's ``yield``: an error thrown
    into the lifespan then reaches the server as itself, not inside an exception group.
    """
    task = asyncio.create_task(purge_periodically(db, store, interval))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
