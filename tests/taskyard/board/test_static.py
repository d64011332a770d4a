"""The board serves everything it needs itself: htmx vendored, no other origin referenced, and
a Content Security Policy that allows the board's own scripts only."""

from __future__ import annotations

import re

import httpx

from tests.taskyard.board.board_client import BOARD, sign_in
from tests.taskyard.conftest import Actor


async def test_htmx_is_served_by_the_board_with_its_license(
    api_client: httpx.AsyncClient,
) -> None:
    script = await api_client.get(f"{BOARD}/static/htmx.min.js")
    assert script.status_code == 200
    assert script.text.startswith("/*! htmx 2.0.11 | https://htmx.org | Zero-Clause BSD")
    assert "var htmx=function()" in script.text
    license_text = await api_client.get(f"{BOARD}/static/htmx.LICENSE")
    assert "Zero-Clause BSD" in license_text.text


async def test_pages_load_nothing_from_elsewhere_and_allow_no_inline_script(
    api_client: httpx.AsyncClient, alice: Actor
) -> None:
    sign_in_page = await api_client.get(f"{BOARD}/sign-in")
    api_client.cookies.clear()
    visitor = await sign_in(api_client, alice.api_key)
    projects = await visitor.get("/projects")
    for page in (sign_in_page, projects):
        assert not re.search(r'(src|href)="(https?:)?//', page.text)
        assert "<script>" not in page.text  # scripts are files, never inline
        policy = page.headers["content-security-policy"]
        assert "script-src 'self'" in policy
        assert "frame-ancestors 'none'" in policy
        assert page.headers["cache-control"] == "no-store"
