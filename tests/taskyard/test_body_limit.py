"""taskyard's body limit answers every 413 as a problem; FastAPI's own does not (yet).

The second test is why taskyard.body_limit exists (see its docstring): it fails the day
FastAPI's ``max_body_size`` answers a declared ``Content-Length`` over the limit through
the app's exception handlers, and then taskyard's middleware can give way to it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI
from pydantic import BaseModel

from taskyard.app import create_app
from taskyard.problems import PROBLEM_MEDIA_TYPE, install_problem_handlers
from taskyard.settings import Settings

LIMIT = 100
OVER = b'{"x": "' + b"a" * (2 * LIMIT) + b'"}'


async def _chunked() -> AsyncIterator[bytes]:
    for start in range(0, len(OVER), 50):
        yield OVER[start : start + 50]


async def _send(app: FastAPI, path: str, *, chunked: bool) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        content = _chunked() if chunked else OVER
        headers = {"Content-Type": "application/json"}
        return await client.post(path, content=content, headers=headers)


async def test_taskyards_limit_answers_a_problem_with_and_without_content_length() -> None:
    # Refused before authentication or any database work: no lifespan needed.
    app = create_app(Settings(database_url="sqlite+aiosqlite:///:memory:", max_body_size=LIMIT))
    for chunked in (False, True):
        response = await _send(app, "/api/v1/tasks", chunked=chunked)
        assert response.status_code == 413, response.text
        assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
        assert response.json()["type"] == "/problems/payload-too-large"
        assert response.json()["detail"] == f"body: larger than {LIMIT} bytes"


class Body(BaseModel):
    x: str


async def test_fastapis_max_body_size_answers_a_declared_length_in_plain_text() -> None:
    app = FastAPI(max_body_size=LIMIT)
    install_problem_handlers(app)

    @app.post("/items")
    async def create_item(body: Body) -> Body:
        return body

    declared = await _send(app, "/items", chunked=False)
    assert declared.status_code == 413
    assert declared.headers["content-type"].startswith("text/plain")
    assert declared.text == "Content Too Large"
    # A chunked body's 413 is raised inside the app, and its handler makes it a problem.
    streamed = await _send(app, "/items", chunked=True)
    assert streamed.status_code == 413
    assert streamed.headers["content-type"] == PROBLEM_MEDIA_TYPE
