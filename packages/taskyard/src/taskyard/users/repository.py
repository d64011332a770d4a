"""Queries on users and API keys."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import bindparam
from sqlalchemy import select as sa_select
from sqlmodel import col, select

from sessionwise import Session
from taskyard.tables import table_of
from taskyard.users.models import ApiKey, User

__all__ = ["KeyOwner", "UserRepository"]


@dataclass(frozen=True, slots=True)
class KeyOwner:
    """The stored hash of a live key and the user it belongs to."""

    key_hash: str
    user_id: int
    email: str
    name: str
    read_after_lsn: int | None = None


_keys, _users = table_of(ApiKey), table_of(User)
# Runs on every authenticated request: a Core statement built once, the key id bound.
_LIVE_KEY_OWNER = (
    sa_select(_keys.c.key_hash, _users.c.id, _users.c.email, _users.c.name)
    .join_from(_keys, _users, _users.c.id == _keys.c.user_id)
    .where(_keys.c.key_id == bindparam("key_id"), _keys.c.revoked_at.is_(None))
)
# The same lookup with the key's read-your-writes position, for a Database with replicas
# (the one above stays the statement of the path without them).
_LIVE_KEY_OWNER_WITH_POSITION = _LIVE_KEY_OWNER.add_columns(_keys.c.read_after_lsn)


class UserRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    async def by_email(self, email: str) -> User | None:
        return (await self.session.exec(select(User).where(User.email == email))).first()

    async def by_id(self, user_id: int) -> User | None:
        return await self.session.get(User, user_id)

    async def add(self, user: User) -> User:
        self.session.add(user)
        await self.session.flush()
        return user

    async def add_key(self, key: ApiKey) -> ApiKey:
        self.session.add(key)
        await self.session.flush()
        return key

    async def live_key_owner(self, key_id: str, *, with_position: bool = False) -> KeyOwner | None:
        """One statement per authenticated request: the key's hash and its user, unless revoked.

        *with_position* also reads the key's ``read_after_lsn``.
        """
        connection = await self.session.connection()  # Core rows: no ORM layer to go through
        statement = _LIVE_KEY_OWNER_WITH_POSITION if with_position else _LIVE_KEY_OWNER
        row = (await connection.execute(statement, {"key_id": key_id})).first()
        if row is None:
            return None
        key_hash, user_id, email, name, *position = row
        assert user_id is not None
        return KeyOwner(
            key_hash=key_hash,
            user_id=user_id,
            email=email,
            name=name,
            read_after_lsn=position[0] if position else None,
        )

    async def key_by_key_id(self, key_id: str) -> ApiKey | None:
        return (await self.session.exec(select(ApiKey).where(ApiKey.key_id == key_id))).first()

    async def keys_of(self, user_id: int) -> list[ApiKey]:
        statement = select(ApiKey).where(ApiKey.user_id == user_id).order_by(col(ApiKey.id))
        return list(await self.session.exec(statement))
