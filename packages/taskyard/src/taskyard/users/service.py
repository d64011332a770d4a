"""Users, API keys and authentication.

An API key reads ``ty_<key id>_<secret>``: the key id (48 random bits, hex) is public and
finds the row; the secret is 256 random bits. Only the SHA-256 of the whole key is stored. A
plain hash is enough for a key this random (no dictionary to try, unlike a password), and keeps
authentication to one indexed lookup and one constant-time comparison per request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sessionwise import Session
from taskyard.errors import ProblemError, ProblemKind
from taskyard.timestamps import utc_now
from taskyard.users.models import ApiKey, User
from taskyard.users.repository import UserRepository
from taskyard.users.schemas import UserCreate

__all__ = ["Caller", "IssuedKey", "UserService", "parse_api_key"]

_PREFIX = "ty_"
_KEY_ID_CHARS = 12


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated user of a request."""

    id: int
    email: str
    name: str
    key_id: str = ""
    # With read replicas: where this key's reads must have been replayed to (a WAL LSN).
    read_after_lsn: int | None = None


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A new key: ``api_key`` is the only copy of the key there will ever be."""

    key: ApiKey
    api_key: str


def _hash(api_key: str) -> str:
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()


def parse_api_key(api_key: str) -> str | None:
    """The key id of a well-formed key, else None."""
    if not api_key.startswith(_PREFIX) or len(api_key) < len(_PREFIX) + _KEY_ID_CHARS + 2:
        return None
    key_id = api_key[len(_PREFIX) : len(_PREFIX) + _KEY_ID_CHARS]
    if api_key[len(_PREFIX) + _KEY_ID_CHARS] != "_" or not all(
        c in "0123456789abcdef" for c in key_id
    ):
        return None
    return key_id


def _new_key(user_id: int, label: str) -> IssuedKey:
    key_id = secrets.token_hex(_KEY_ID_CHARS // 2)
    api_key = f"{_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    return IssuedKey(
        key=ApiKey(user_id=user_id, key_id=key_id, key_hash=_hash(api_key), label=label),
        api_key=api_key,
    )


class UserService:
    def __init__(self, session: Session) -> None:
        self.users = UserRepository(session)

    async def create_user(self, data: UserCreate, key_label: str = "") -> tuple[User, IssuedKey]:
        if await self.users.by_email(data.email) is not None:
            raise ProblemError(ProblemKind.CONFLICT, f"a user with email {data.email} exists")
        user = await self.users.add(User(email=data.email, name=data.name))
        assert user.id is not None
        issued = _new_key(user.id, key_label)
        await self.users.add_key(issued.key)
        return user, issued

    async def user_by_email(self, email: str) -> User:
        user = await self.users.by_email(email.strip().lower())
        if user is None:
            raise ProblemError(ProblemKind.NOT_FOUND, f"no user with email {email}")
        return user

    async def create_key(self, email: str, label: str = "") -> IssuedKey:
        user = await self.user_by_email(email)
        assert user.id is not None
        issued = _new_key(user.id, label)
        await self.users.add_key(issued.key)
        return issued

    async def revoke_key(self, reference: str) -> ApiKey:
        """Revoke by key id (``3f2a...``), printed prefix (``ty_3f2a...``) or the whole key."""
        reference = reference.strip()
        key_id = parse_api_key(reference)
        if key_id is None:
            key_id = reference.removeprefix(_PREFIX)
        key = await self.users.key_by_key_id(key_id)
        if key is None:
            raise ProblemError(ProblemKind.NOT_FOUND, f"no API key with id {key_id!r}")
        if key.revoked_at is None:
            key.revoked_at = utc_now()
            await self.users.session.flush()
        return key

    async def keys_of(self, email: str) -> list[ApiKey]:
        user = await self.user_by_email(email)
        assert user.id is not None
        return await self.users.keys_of(user.id)

    async def authenticate(self, api_key: str, *, with_position: bool = False) -> Caller | None:
        """The key's user, or None for a malformed, unknown or revoked key.

        *with_position* also reads the key's read-your-writes position (with replicas).
        """
        key_id = parse_api_key(api_key)
        if key_id is None:
            return None
        owner = await self.users.live_key_owner(key_id, with_position=with_position)
        if owner is None or not hmac.compare_digest(owner.key_hash, _hash(api_key)):
            return None
        return Caller(
            id=owner.user_id,
            email=owner.email,
            name=owner.name,
            key_id=key_id,
            read_after_lsn=owner.read_after_lsn,
        )
