"""Liveness and readiness probes, without authentication."""

from __future__ import annotations

import math

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from sessionwise.fastapi import DatabaseDep
from taskyard.errors import ProblemKind
from taskyard.problems import problem_response, problem_responses

__all__ = ["router"]

router = APIRouter(prefix="/health", tags=["health"])


class Live(BaseModel):
    status: str = "ok"


class PoolRead(BaseModel):
    size: int
    checked_out: int
    overflow: int
    waiting: int


class Ready(BaseModel):
    status: str = "ok"
    database: str = "ok"
    pool: PoolRead
    waiting_claims: int = Field(
        default=0, description="Claims waiting for work right now, holding no connection."
    )


@router.get("/live", summary="The process is up")
async def live() -> Live:
    return Live()


@router.get(
    "/ready",
    summary="The database answers; with the connection pool's state",
    responses=problem_responses(503),
    response_model=Ready,
)
async def ready(db: DatabaseDep, request: Request) -> Ready | JSONResponse:
    answered = await db.ping()
    pool = PoolRead(**db.pool_status().as_dict())
    if answered:
        wakeups = getattr(request.app.state, "wakeups", None)
        return Ready(pool=pool, waiting_claims=len(wakeups) if wakeups is not None else 0)
    return problem_response(
        ProblemKind.SERVICE_UNAVAILABLE,
        "the database does not answer",
        headers={"Retry-After": str(max(1, math.ceil(db.config.pool_timeout)))},
        extensions={"database": "unavailable", "pool": pool.model_dump()},
    )
