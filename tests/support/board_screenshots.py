"""``make screenshots``: PNGs of the board in chromium, for the docs and the README.

Serves the app in a thread on a throwaway SQLite file, fills a project through the API the way
a team and its agents would (tasks created, claimed, completed, failed), then photographs the
sign-in page, the board, and a stale edit meeting its conflict.

    python -m tests.support.board_screenshots docs/images
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Page, expect, sync_playwright

from tests.support.chromium import CHROMIUM_ARGS, chromium_path
from tests.support.threaded_app import serve_in_thread

API = "/api/v1"


def _fill(api: httpx.Client) -> tuple[int, int]:
    def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = api.post(f"{API}{path}", json=body)
        assert response.status_code in (200, 201), response.text
        return dict(response.json())

    project = post("/projects", {"name": "Website relaunch", "description": "Q1 launch"})
    pid = project["id"]
    ci = post("/workers", {"project_id": pid, "name": "agent-ci"})["id"]
    docs = post("/workers", {"project_id": pid, "name": "agent-docs"})["id"]
    titles = [
        ("Migrate the blog to the new theme", 5),
        ("Compress hero images", 3),
        ("Write the launch announcement", 8),
        ("Check every redirect from the old site", 2),
        ("Run the accessibility audit", 6),
        ("Translate the pricing page", 1),
        ("Load-test the checkout", 7),
        ("Update the sitemap", 0),
    ]
    tasks = [post("/tasks", {"project_id": pid, "title": t, "priority": p}) for t, p in titles]
    footer = {"project_id": pid, "title": "Fix the <footer> links", "priority": 9}
    post("/tasks", {**footer, "max_attempts": 1})
    doomed = post("/tasks/claim", {"worker_id": docs, "lease_seconds": 300})
    post(f"/tasks/{doomed['id']}/fail", {"worker_id": docs, "error": "TimeoutError: footer.js"})
    claimed = post("/tasks/claim", {"worker_id": ci, "lease_seconds": 900})
    post(f"/tasks/{claimed['id']}/complete", {"worker_id": ci, "result": {"ok": True}})
    post("/tasks/claim", {"worker_id": ci, "lease_seconds": 600})
    post("/tasks/claim", {"worker_id": docs, "lease_seconds": 240})
    failing = post("/tasks/claim", {"worker_id": docs, "lease_seconds": 300})
    post(f"/tasks/{failing['id']}/fail", {"worker_id": docs, "error": "404 on /pricing/de"})
    api.patch(f"{API}/tasks/{tasks[-1]['id']}", json={"status": "cancelled"})
    return pid, tasks[0]["id"]


def _shoot(page: Page, path: Path) -> None:
    page.screenshot(path=str(path), full_page=True)
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path, help="directory for the PNGs (docs/images)")
    output = parser.parse_args().output
    output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as workdir:
        url = f"sqlite+aiosqlite:///{Path(workdir) / 'screenshots.db'}"
        with (
            serve_in_thread(url, "Dana") as app,
            httpx.Client(base_url=app.base_url, headers=app.user.headers) as api,
        ):
            project_id, task_id = _fill(api)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=chromium_path(), args=CHROMIUM_ARGS
                )
                page = browser.new_page(
                    base_url=app.base_url, viewport={"width": 1360, "height": 860}
                )
                page.goto("/board/sign-in")
                _shoot(page, output / "board-sign-in.png")
                page.get_by_label("API key").fill(app.user.api_key)
                page.get_by_role("button", name="Sign in").click()
                page.goto(f"/board/projects/{project_id}")
                expect(page.locator("#column-in_progress li.card")).to_have_count(2)
                _shoot(page, output / "board.png")
                page.goto(f"/board/tasks/{task_id}")
                page.get_by_label("Title").fill("Migrate the blog (and its comments)")
                api.patch(f"{API}/tasks/{task_id}", json={"priority": 9, "status": "done"})
                page.get_by_role("button", name="Save").click()
                expect(page.locator("#notice")).to_contain_text("changed since you opened it")
                _shoot(page, output / "board-conflict.png")
                browser.close()


if __name__ == "__main__":
    main()
