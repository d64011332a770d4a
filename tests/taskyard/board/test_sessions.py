"""Board sign-in: an API key opens a server-side session held by a signed, HttpOnly cookie.

Signing out deletes the session on the server, so the old cookie, replayed, opens nothing;
revoking the key the session was opened with ends it too. The database keeps only hashes.
"""

from __future__ import annotations

import hashlib

import httpx
from sqlalchemy import text

from sessionwise import Database
from taskyard.users.service import UserService
from tests.taskyard.board.board_client import BOARD, Visitor, sign_in, sign_in_response
from tests.taskyard.conftest import Actor


def _signed_out(response: httpx.Response) -> bool:
    return response.status_code == 303 and response.headers["location"] == f"{BOARD}/sign-in"


async def test_the_session_cookie_is_httponly_samesite_lax_and_scoped_to_the_board(
    api_client: httpx.AsyncClient, alice: Actor
) -> None:
    visitor = await sign_in(api_client, alice.api_key)
    flags = [part.strip().lower() for part in visitor.set_cookie.split(";")]
    assert "httponly" in flags
    assert "samesite=lax" in flags
    assert "path=/board" in flags
    assert "secure" not in flags  # plain http here; see the https test below
    assert alice.api_key not in visitor.set_cookie


async def test_the_cookie_is_secure_when_the_board_is_served_over_https(
    api_client: httpx.AsyncClient, alice: Actor
) -> None:
    https = httpx.AsyncClient(transport=api_client._transport, base_url="https://testserver")
    async with https:
        visitor = await sign_in(https, alice.api_key)
    assert "secure" in [part.strip().lower() for part in visitor.set_cookie.split(";")]


async def test_only_a_hash_of_the_session_token_is_stored(
    api_client: httpx.AsyncClient, alice: Actor, isolated_db: Database
) -> None:
    visitor = await sign_in(api_client, alice.api_key)
    token = visitor.cookie.rpartition(".")[0]
    async with isolated_db.session() as session:
        rows = (
            await session.execute(
                text("SELECT token_hash FROM board_sessions WHERE user_id = :u"), {"u": alice.id}
            )
        ).all()
    assert [row.token_hash for row in rows] == [hashlib.sha256(token.encode()).hexdigest()]


async def test_a_wrong_key_is_refused_and_not_repeated_back(
    api_client: httpx.AsyncClient, alice: Actor
) -> None:
    wrong = alice.api_key[:-4] + "AAAA"
    response = await sign_in_response(api_client, wrong)
    assert response.status_code == 401
    assert "not valid" in response.text
    assert wrong not in response.text
    assert "taskyard_board=" not in response.headers.get("set-cookie", "")


async def test_without_a_session_the_board_asks_for_sign_in(api_client: httpx.AsyncClient) -> None:
    for path in ("/", "/projects", "/projects/1", "/tasks/1"):
        response = await api_client.get(f"{BOARD}{path}")
        assert _signed_out(response), path
    # htmx requests are sent to the sign-in page by htmx itself.
    polled = await api_client.get(f"{BOARD}/projects/1/board", headers={"HX-Request": "true"})
    assert polled.status_code == 401
    assert polled.headers["HX-Redirect"] == f"{BOARD}/sign-in"


async def test_a_forged_cookie_opens_nothing(api_client: httpx.AsyncClient, alice: Actor) -> None:
    visitor = await sign_in(api_client, alice.api_key)
    token, _, mac = visitor.cookie.rpartition(".")
    for forged in (f"{token}x.{mac}", token, f"{token}.{mac[:-2]}AA", "garbage", "a" * 500):
        impostor = Visitor(api_client, forged, visitor.csrf, "")
        assert _signed_out(await impostor.get("/projects")), forged


async def test_sign_out_ends_the_session_on_the_server(
    api_client: httpx.AsyncClient, alice: Actor
) -> None:
    visitor = await sign_in(api_client, alice.api_key)
    assert (await visitor.get("/projects")).status_code == 200
    response = await visitor.post("/sign-out")
    assert _signed_out(response)
    # The cookie is cleared in the browser, and the old one, replayed, no longer works.
    cleared = response.headers["set-cookie"]
    assert cleared.startswith('taskyard_board=""') or "max-age=0" in cleared.lower()
    assert _signed_out(await visitor.get("/projects"))


async def test_revoking_the_key_ends_the_sessions_it_opened(
    api_client: httpx.AsyncClient, alice: Actor, isolated_db: Database
) -> None:
    visitor = await sign_in(api_client, alice.api_key)
    assert (await visitor.get("/projects")).status_code == 200
    async with isolated_db.session() as session:
        await UserService(session).revoke_key(alice.api_key)
    assert _signed_out(await visitor.get("/projects"))
    assert (await sign_in_response(api_client, alice.api_key)).status_code == 401


async def test_an_expired_session_opens_nothing(
    api_client: httpx.AsyncClient, alice: Actor, isolated_db: Database
) -> None:
    visitor = await sign_in(api_client, alice.api_key)
    async with isolated_db.session() as session:
        await session.execute(
            text("UPDATE board_sessions SET expires_at = created_at WHERE user_id = :u"),
            {"u": alice.id},
        )
    assert _signed_out(await visitor.get("/projects"))
