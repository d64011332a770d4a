"""A signed-in board visitor over httpx (no browser): cookies and CSRF tokens by hand.

One `api_client` serves several visitors, so each carries its own ``Cookie`` header and the
client's own jar is emptied after every answer that sets one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import httpx

BOARD = "/board"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found is not None, "no CSRF token on the page"
    return found.group(1)


@dataclass
class Visitor:
    client: httpx.AsyncClient
    cookie: str  # the value of the taskyard_board cookie
    csrf: str
    set_cookie: str  # the Set-Cookie header that opened the session

    def _headers(self, extra: dict[str, str] | None) -> dict[str, str]:
        return {"Cookie": f"taskyard_board={self.cookie}", **(extra or {})}

    async def get(self, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
        response = await self.client.get(f"{BOARD}{path}", headers=self._headers(headers))
        self.client.cookies.clear()
        return response

    async def post(
        self,
        path: str,
        data: dict[str, Any] | None = None,
        *,
        csrf: bool = True,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        form = dict(data or {})
        if csrf:
            form.setdefault("csrf_token", self.csrf)
        response = await self.client.post(
            f"{BOARD}{path}", data=form, headers=self._headers(headers)
        )
        self.client.cookies.clear()
        return response


async def sign_in_response(client: httpx.AsyncClient, api_key: str) -> httpx.Response:
    form = await client.get(f"{BOARD}/sign-in")
    nonce = form.cookies["taskyard_board_sign_in"]
    client.cookies.clear()
    response = await client.post(
        f"{BOARD}/sign-in",
        data={"api_key": api_key, "csrf_token": csrf_of(form.text)},
        headers={"Cookie": f"taskyard_board_sign_in={nonce}"},
    )
    client.cookies.clear()
    return response


async def sign_in(client: httpx.AsyncClient, api_key: str) -> Visitor:
    response = await sign_in_response(client, api_key)
    assert response.status_code == 303, response.text
    assert response.headers["location"] == f"{BOARD}/projects"
    cookie = response.cookies["taskyard_board"]
    set_cookie = next(
        value
        for value in response.headers.get_list("set-cookie")
        if value.startswith("taskyard_board=")
    )
    visitor = Visitor(client=client, cookie=cookie, csrf="", set_cookie=set_cookie)
    page = await visitor.get("/projects")
    assert page.status_code == 200
    visitor.csrf = csrf_of(page.text)
    return visitor
