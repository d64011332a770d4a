"""The board in chromium: sign in, create, move, watch an agent's claim arrive, meet a
conflict, stay safe from hostile titles, sign out, and do all of it from the keyboard."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import Browser, Dialog, Page, expect

from tests.support.threaded_app import ThreadedApp
from tests.taskyard.board.browser.conftest import API, Project, card, open_board, sign_in

pytestmark = pytest.mark.browser

HOSTILE = "<img src=x onerror=alert(1)>"


def test_sign_in_and_create_a_task(page: Page, served: ThreadedApp, project: Project) -> None:
    sign_in(page, served)
    page.get_by_role(
        "link", name=str(project.api.get(f"{API}/projects/{project.id}").json()["name"])
    ).click()
    expect(page.get_by_role("heading", name="New task")).to_be_visible()
    page.get_by_label("Title").fill("Write the release notes")
    page.get_by_label("Priority").fill("5")
    page.locator("#new-assignee").select_option(label="agent-7")
    page.get_by_role("button", name="Create task").click()
    created = card(page, "pending", "Write the release notes")
    expect(created).to_be_visible()
    expect(created.locator(".priority")).to_have_text("5")
    expect(created.locator(".assignee")).to_have_text("agent-7")
    expect(page.get_by_label("Title")).to_have_value("")  # the form is ready for the next one
    tasks = project.api.get(f"{API}/tasks", params={"project_id": project.id}).json()["items"]
    assert [(t["title"], t["priority"], t["assignee"]["name"]) for t in tasks] == [
        ("Write the release notes", 5, "agent-7")
    ]


def test_move_a_task(page: Page, served: ThreadedApp, project: Project) -> None:
    task = project.task("Ship the build")
    sign_in(page, served)
    open_board(page, project)
    page.get_by_role("button", name="Move “Ship the build” to Done").click()
    expect(card(page, "done", "Ship the build")).to_be_visible()
    expect(card(page, "pending", "Ship the build")).to_have_count(0)
    assert project.read(task["id"])["status"] == "done"


def test_forms_work_without_javascript(
    browser: Browser, served: ThreadedApp, project: Project
) -> None:
    context = browser.new_context(base_url=served.base_url, java_script_enabled=False)
    try:
        page = context.new_page()
        sign_in(page, served)
        open_board(page, project)
        page.get_by_label("Title").fill("Plain HTML")
        page.get_by_role("button", name="Create task").click()  # a full POST, then a 303
        expect(page).to_have_url(re.compile(rf"/board/projects/{project.id}$"))
        expect(card(page, "pending", "Plain HTML")).to_be_visible()
        page.get_by_role("button", name="Move “Plain HTML” to Done").click()
        expect(card(page, "done", "Plain HTML")).to_be_visible()
        page.get_by_role("link", name="Plain HTML").click()
        page.get_by_label("Priority").fill("4")
        page.get_by_role("button", name="Save").click()
        expect(card(page, "done", "Plain HTML").locator(".priority")).to_have_text("4")
    finally:
        context.close()


def test_an_agents_claim_moves_the_card_by_itself(
    page: Page, served: ThreadedApp, project: Project
) -> None:
    project.task("Crunch the numbers")
    sign_in(page, served)
    open_board(page, project)
    expect(card(page, "pending", "Crunch the numbers")).to_be_visible()
    claimed = project.api.post(
        f"{API}/tasks/claim", json={"worker_id": project.worker_id, "lease_seconds": 600}
    )
    assert claimed.status_code == 200
    # No click, no reload: the board's poller brings the card over.
    moved = card(page, "in_progress", "Crunch the numbers")
    expect(moved).to_be_visible()
    expect(card(page, "pending", "Crunch the numbers")).to_have_count(0)
    expect(moved.locator(".assignee")).to_have_text("agent-7")
    expect(moved.locator("time.lease")).to_have_text(re.compile(r"^(9|10):\d\d left$"))


def test_a_stale_edit_shows_the_conflict(page: Page, served: ThreadedApp, project: Project) -> None:
    task = project.task("Draft the plan")
    sign_in(page, served)
    page.goto(f"/board/tasks/{task['id']}")
    page.get_by_label("Title").fill("Draft the plan, v2")
    # Meanwhile an agent changes the task.
    changed = project.api.patch(
        f"{API}/tasks/{task['id']}", json={"title": "Plan drafted by agent", "status": "done"}
    )
    assert changed.status_code == 200
    page.get_by_role("button", name="Save").click()
    notice = page.locator("#notice")
    expect(notice).to_contain_text("changed since you opened it")
    expect(notice.locator(".state-title")).to_have_text("Plan drafted by agent")
    expect(notice.locator(".state-status")).to_have_text("Done")
    expect(page.get_by_label("Title")).to_have_value("Draft the plan, v2")  # not lost either
    assert project.read(task["id"])["title"] == "Plan drafted by agent"  # not overwritten


def test_a_hostile_title_is_text_and_runs_nothing(
    page: Page, served: ThreadedApp, project: Project
) -> None:
    dialogs: list[str] = []

    def record(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", record)
    task = project.task(HOSTILE, description=f"</textarea>{HOSTILE}")
    sign_in(page, served)
    open_board(page, project)
    title = page.locator(f"#open-{task['id']}")
    expect(title).to_have_text(HOSTILE)
    # One refresh of the board has been swapped in (htmx processed what came back)...
    with page.expect_response(re.compile(rf"/board/projects/{project.id}/board\?")):
        project.task("a change, so that the poller redraws")
    expect(card(page, "pending", "a change, so that the poller redraws")).to_be_visible()
    expect(title).to_have_text(HOSTILE)
    page.goto(f"/board/tasks/{task['id']}")  # and the edit form, title and description
    expect(page.get_by_label("Title")).to_have_value(HOSTILE)
    expect(page.get_by_label("Description")).to_have_value(f"</textarea>{HOSTILE}")
    assert page.locator("img").count() == 0
    assert dialogs == []


def test_sign_out_and_the_board_asks_for_sign_in_again(
    page: Page, served: ThreadedApp, project: Project
) -> None:
    sign_in(page, served)
    open_board(page, project)
    old_cookies = page.context.cookies()
    session_cookie = next(c for c in old_cookies if c["name"] == "taskyard_board")
    assert session_cookie["httpOnly"] is True
    assert session_cookie["sameSite"] == "Lax"
    assert page.evaluate("document.cookie") == ""  # out of reach of scripts
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.goto(f"/board/projects/{project.id}")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    # The old cookie, replayed, opens nothing: the session is gone on the server.
    page.context.add_cookies([session_cookie])  # type: ignore[list-item]
    page.goto(f"/board/projects/{project.id}")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    replayed = httpx.get(
        f"{served.base_url}/board/projects/{project.id}",
        headers={"Cookie": f"taskyard_board={session_cookie['value']}"},
    )
    assert replayed.status_code == 303
    assert replayed.headers["location"] == "/board/sign-in"


def test_an_open_board_goes_to_sign_in_when_its_session_ends(
    page: Page, served: ThreadedApp, project: Project
) -> None:
    sign_in(page, served)
    open_board(page, project)
    cookie = next(c for c in page.context.cookies() if c["name"] == "taskyard_board")
    csrf = page.locator("form.sign-out input[name=csrf_token]")
    # Signed out elsewhere (another tab, same session): the poller is sent to sign-in.
    ended = httpx.post(
        f"{served.base_url}/board/sign-out",
        data={"csrf_token": csrf.get_attribute("value") or ""},
        headers={"Cookie": f"taskyard_board={cookie['value']}"},
    )
    assert ended.status_code == 303
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page).to_have_url(re.compile(r"/board/sign-in$"))


_INTERACTIVE = """() => Array.from(document.querySelectorAll(
    'a[href], button, input:not([type=hidden]), select, textarea'))
  .filter(element => element.getClientRects().length > 0)
  .map(element => element.id)"""


def _tab_through(page: Page, limit: int) -> list[str]:
    """The ids that keyboard focus visits, pressing Tab from the top of the page."""
    page.locator("body").focus()
    reached: list[str] = []
    for _ in range(limit):
        page.keyboard.press("Tab")
        focused = page.evaluate("document.activeElement ? document.activeElement.id : ''")
        if focused in reached:
            break
        reached.append(focused)
    return reached


def _tab_to(page: Page, element_id: str, limit: int = 80) -> None:
    for _ in range(limit):
        if page.evaluate("document.activeElement ? document.activeElement.id : ''") == element_id:
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"#{element_id} not reached with {limit} presses of Tab")


def test_keyboard_only_use_reaches_every_action(
    page: Page, served: ThreadedApp, project: Project
) -> None:
    project.task("Tidy the backlog")
    page.goto("/board/sign-in")
    # The key field has focus; typing and Enter sign in.
    page.keyboard.type(served.user.api_key)
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/board/projects$"))
    reached = _tab_through(page, 40)
    assert f"project-{project.id}" in reached
    _tab_to(page, f"project-{project.id}")
    page.keyboard.press("Enter")
    expect(page.locator("#board")).to_be_visible()

    # Every link, button and field of the board is in the tab order, and has an id.
    interactive = page.evaluate(_INTERACTIVE)
    assert all(interactive), "an interactive element without an id"
    reached = _tab_through(page, len(interactive) + 10)
    assert set(interactive) <= set(reached), set(interactive) - set(reached)

    # The members and workers page too; back to the board by its link.
    _tab_to(page, "nav-people")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Members")).to_be_visible()
    interactive = page.evaluate(_INTERACTIVE)
    reached = _tab_through(page, len(interactive) + 10)
    assert set(interactive) <= set(reached), set(interactive) - set(reached)
    _tab_to(page, "nav-board")
    page.keyboard.press("Enter")
    expect(page.locator("#board")).to_be_visible()

    # Create a task from the keyboard: Tab to the title, type, Enter.
    _tab_to(page, "new-title")
    page.keyboard.type("Typed, not clicked")
    page.keyboard.press("Enter")
    created = card(page, "pending", "Typed, not clicked")
    expect(created).to_be_visible()

    # Move it with the keyboard: focus its Done button, press Enter.
    done_button = created.get_by_role("button", name="Move “Typed, not clicked” to Done")
    done_id = done_button.get_attribute("id")
    _tab_to(page, done_id)
    page.keyboard.press("Enter")
    moved = card(page, "done", "Typed, not clicked")
    expect(moved).to_be_visible()
    task_id = int(moved.get_attribute("data-task-id") or 0)
    # Focus stays with the card, so the next Tab continues from there, not from the top.
    expect(moved.get_by_role("link", name="Typed, not clicked")).to_be_focused()

    # Open it and save an edit, keyboard only.
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name=re.compile(r"^Task #\d+$"))).to_be_visible()
    interactive = page.evaluate(_INTERACTIVE)
    reached = _tab_through(page, len(interactive) + 10)
    assert set(interactive) <= set(reached), set(interactive) - set(reached)
    _tab_to(page, "edit-priority")
    page.keyboard.press("Control+A")
    page.keyboard.type("7")
    _tab_to(page, "save-task")
    page.keyboard.press("Enter")
    expect(page.locator("#notice")).to_contain_text("Saved")
    assert project.read(task_id)["priority"] == 7
