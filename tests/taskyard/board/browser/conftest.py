"""The board in a real browser: Debian's chromium driven by pytest-playwright, against
the app served by uvicorn on a loopback port, in a thread (tests/support/threaded_app.py).

pytest-playwright's own ``playwright`` and ``browser`` fixtures live for the whole session,
and a started sync Playwright leaves its event loop marked as running in the main thread:
every anyio test after it would fail to start its own loop. So they are redefined here per
module, and stop when the browser tests do; pytest-playwright's ``context`` and ``page``
(one fresh context per test) are used as they are.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserType, Page, Playwright, expect, sync_playwright

from tests.support.chromium import CHROMIUM_ARGS, MissingChromiumError, chromium_path
from tests.support.threaded_app import ThreadedApp, serve_in_thread

API = "/api/v1"
TIMEOUT_MS = 15_000  # generous for a loaded 2-core machine; the poller runs every 2 s
expect.set_options(timeout=TIMEOUT_MS)


@pytest.fixture(scope="module")
def browser_type_launch_args() -> dict[str, Any]:
    try:
        executable = chromium_path()
    except MissingChromiumError as error:
        missing = str(error)
    else:
        return {"executable_path": executable, "args": CHROMIUM_ARGS, "headless": True}
    pytest.fail(missing, pytrace=False)  # never a skip: CI installs it (make system-deps)


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as started:
        yield started


@pytest.fixture(scope="module")
def browser_type(playwright: Playwright) -> BrowserType:
    return playwright.chromium


@pytest.fixture(scope="module")
def browser(
    browser_type: BrowserType, browser_type_launch_args: dict[str, Any]
) -> Iterator[Browser]:
    launched = browser_type.launch(**browser_type_launch_args)
    yield launched
    launched.close()


@pytest.fixture(scope="module")
def browser_context_args(served: ThreadedApp) -> dict[str, Any]:
    return {"base_url": served.base_url, "viewport": {"width": 1280, "height": 900}}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedApp]:
    workdir = tmp_path_factory.mktemp("board")
    with serve_in_thread(f"sqlite+aiosqlite:///{workdir / 'board.db'}") as app:
        yield app
        log = app.log()
    # Everything the server logged while browsers signed in and worked: never the key.
    assert "GET /board/projects" in log  # the access log was captured
    for user in app.users:
        assert user.api_key not in log, "an API key reached the server's log"


@dataclass
class Project:
    """A project of the served app's first user, with one worker (the "agent")."""

    id: int
    worker_id: int
    api: httpx.Client

    def task(self, title: str, **fields: Any) -> dict[str, Any]:
        response = self.api.post(
            f"{API}/tasks", json={"project_id": self.id, "title": title, **fields}
        )
        assert response.status_code == 201, response.text
        return dict(response.json())

    def read(self, task_id: int) -> dict[str, Any]:
        return dict(self.api.get(f"{API}/tasks/{task_id}").json())


@pytest.fixture
def project(served: ThreadedApp, request: pytest.FixtureRequest) -> Iterator[Project]:
    with httpx.Client(base_url=served.base_url, headers=served.user.headers, timeout=10) as api:
        created = api.post(f"{API}/projects", json={"name": request.node.name[:100]})
        assert created.status_code == 201, created.text
        project_id = created.json()["id"]
        worker = api.post(f"{API}/workers", json={"project_id": project_id, "name": "agent-7"})
        yield Project(id=project_id, worker_id=worker.json()["id"], api=api)


def sign_in(page: Page, served: ThreadedApp) -> None:
    page.goto("/board/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_label("API key").fill(served.user.api_key)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/board/projects$"))


def open_board(page: Page, project: Project) -> None:
    page.goto(f"/board/projects/{project.id}")
    expect(page.locator("#board")).to_be_visible()


def card(page: Page, column: str, title: str) -> Any:
    return page.locator(f"#column-{column} li.card").filter(
        has=page.get_by_role("link", name=title, exact=True)
    )
