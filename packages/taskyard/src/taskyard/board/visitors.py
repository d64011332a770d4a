"""Who is looking at the board: the signed-in user from the session cookie, and CSRF checks.

Two aliases, as in `taskyard.auth`: `BoardReader` finds the session in the request's read
session (pages), `BoardWriter` in its write session and also checks the form's CSRF token
(every request that changes something). A request without a live session raises
`NotSignedIn`, answered with a redirect to the sign-in page.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Form, Request

from sessionwise import Session
from sessionwise.fastapi import ReadSessionDep, SessionDep
from taskyard.board.sessions import BoardSessionService
from taskyard.board.tokens import BoardTokens
from taskyard.users.service import Caller

__all__ = [
    "COOKIE_NAME",
    "SIGN_IN_COOKIE_NAME",
    "BoardReader",
    "BoardWriter",
    "CsrfRefused",
    "NotSignedIn",
    "Visitor",
    "board_tokens",
]

COOKIE_NAME = "taskyard_board"
# A signed nonce for the sign-in form's CSRF token, before there is a session (login CSRF:
# a foreign page must not sign a browser in to someone else's account).
SIGN_IN_COOKIE_NAME = "taskyard_board_sign_in"
CsrfField = Annotated[str | None, Form(max_length=200)]


class NotSignedIn(Exception):
    """No live board session: no cookie, a forged one, signed out, expired or key revoked."""


class CsrfRefused(Exception):
    """A request that changes something came without the form's CSRF token (403)."""


@dataclass(frozen=True, slots=True)
class Visitor:
    """The signed-in user and the CSRF token every form of the page carries."""

    caller: Caller
    token: str
    csrf_token: str


def board_tokens(request: Request) -> BoardTokens:
    tokens = request.app.state.board_tokens
    assert isinstance(tokens, BoardTokens)
    return tokens


async def _visitor(request: Request, session: Session) -> Visitor:
    tokens = board_tokens(request)
    token = tokens.token_of(request.cookies.get(COOKIE_NAME))
    if token is None:
        raise NotSignedIn
    signed_in = await BoardSessionService(session).signed_in(token)
    if signed_in is None:
        raise NotSignedIn
    return Visitor(caller=signed_in.caller, token=token, csrf_token=tokens.csrf_token(token))


async def _reader(request: Request, session: ReadSessionDep) -> Visitor:
    return await _visitor(request, session)


async def _writer(request: Request, session: SessionDep, csrf_token: CsrfField = None) -> Visitor:
    visitor = await _visitor(request, session)
    if not board_tokens(request).csrf_matches(visitor.token, csrf_token):
        raise CsrfRefused
    return visitor


BoardReader = Annotated[Visitor, Depends(_reader)]
"""The signed-in visitor, found in the request's read session."""

BoardWriter = Annotated[Visitor, Depends(_writer)]
"""The signed-in visitor of a changing request whose form carried the session's CSRF token."""
