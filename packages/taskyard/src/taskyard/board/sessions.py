"""Opening, finding and ending board sessions; the API key is checked on every request.

Signing in goes through `UserService.authenticate`, the API's own check of a key. Each
request then finds its session in one statement that joins the key it was opened with and
requires it live, as the API's authentication does for its bearer key: revoking the key
ends every board session opened with it at the next request.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, delete, insert, select

from sessionwise import Session
from taskyard.board.models import BoardSession
from taskyard.board.tokens import hash_token, new_token
from taskyard.tables import table_of
from taskyard.timestamps import utc_now
from taskyard.users.models import ApiKey, User
from taskyard.users.repository import UserRepository
from taskyard.users.service import Caller, UserService, parse_api_key

__all__ = ["SESSION_LIFETIME", "BoardSessionService", "OpenedSession", "SignedIn"]

SESSION_LIFETIME = timedelta(hours=12)
"""How long a board session lasts from sign-in, whatever happens; then sign in again."""

_sessions, _keys, _users = table_of(BoardSession), table_of(ApiKey), table_of(User)

_LIVE_SESSION = (
    select(_sessions.c.id, _users.c.id.label("user_id"), _users.c.email, _users.c.name)
    .select_from(
        _sessions.join(_keys, _keys.c.id == _sessions.c.api_key_id).join(
            _users, _users.c.id == _sessions.c.user_id
        )
    )
    .where(
        _sessions.c.token_hash == bindparam("token_hash"),
        _sessions.c.expires_at > bindparam("now"),
        _keys.c.revoked_at.is_(None),
    )
)
_INSERT = insert(_sessions)
_DELETE = delete(_sessions).where(_sessions.c.token_hash == bindparam("token_hash"))
_DELETE_EXPIRED_OF_USER = delete(_sessions).where(
    _sessions.c.user_id == bindparam("user_id"), _sessions.c.expires_at <= bindparam("now")
)


@dataclass(frozen=True, slots=True)
class SignedIn:
    """The user of a live board session."""

    session_id: int
    caller: Caller


@dataclass(frozen=True, slots=True)
class OpenedSession:
    """A new session: *token* goes into the cookie and nowhere else."""

    token: str
    caller: Caller
    expires_at: datetime


class BoardSessionService:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.users = UserService(session)
        self.user_rows = UserRepository(session)

    async def sign_in(self, api_key: str) -> OpenedSession | None:
        """A session for the key's user, or None for a malformed, unknown or revoked key."""
        caller = await self.users.authenticate(api_key)
        key_id = parse_api_key(api_key)
        key = (
            None if caller is None or key_id is None else await self.user_rows.key_by_key_id(key_id)
        )
        if caller is None or key is None or key.id is None:
            return None
        now = utc_now()
        token = new_token()
        connection = await self.session.connection()
        # The user's expired sessions go here: no purge job, and at most one sign-in's worth
        # of rows per user outlives its lifetime.
        await connection.execute(_DELETE_EXPIRED_OF_USER, {"user_id": caller.id, "now": now})
        expires_at = now + SESSION_LIFETIME
        await connection.execute(
            _INSERT,
            {
                "token_hash": hash_token(token),
                "user_id": caller.id,
                "api_key_id": key.id,
                "created_at": now,
                "expires_at": expires_at,
            },
        )
        return OpenedSession(token=token, caller=caller, expires_at=expires_at)

    async def signed_in(self, token: str) -> SignedIn | None:
        """The live session of *token*: not signed out, not expired, its key not revoked."""
        connection = await self.session.connection()
        params = {"token_hash": hash_token(token), "now": utc_now()}
        row = (await connection.execute(_LIVE_SESSION, params)).first()
        if row is None:
            return None
        return SignedIn(
            session_id=row.id, caller=Caller(id=row.user_id, email=row.email, name=row.name)
        )

    async def sign_out(self, token: str) -> None:
        connection = await self.session.connection()
        await connection.execute(_DELETE, {"token_hash": hash_token(token)})
