"""``/users/me``: who the API key belongs to."""

from __future__ import annotations

from fastapi import APIRouter

from taskyard.auth import CurrentReader
from taskyard.users.schemas import UserRead

__all__ = ["router"]

router = APIRouter(prefix="/users", tags=["users"])


@router.get("/me", summary="The user the API key belongs to")
async def read_me(caller: CurrentReader) -> UserRead:
    return UserRead(id=caller.id, email=caller.email, name=caller.name)
