"""``GET /problems/<kind>``: what each problem ``type`` URI means (they resolve here)."""

from __future__ import annotations

from fastapi import APIRouter

from taskyard.errors import ProblemError, ProblemKind
from taskyard.problems import ProblemKindRead, describe, problem_responses

__all__ = ["router"]

router = APIRouter(prefix="/problems", tags=["problems"])


@router.get("", summary="Every problem type this API answers with")
async def list_problem_types() -> list[ProblemKindRead]:
    return [describe(kind) for kind in ProblemKind]


@router.get("/{kind}", summary="One problem type", responses=problem_responses(404))
async def read_problem_type(kind: str) -> ProblemKindRead:
    try:
        return describe(ProblemKind(kind))
    except ValueError:
        raise ProblemError(ProblemKind.NOT_FOUND, "no such problem type") from None
