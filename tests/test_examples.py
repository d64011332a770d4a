"""The examples run: the README's web app and job, and the migration guide's "after" code."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from sessionwise import LazyLoadError

ROOT = Path(__file__).resolve().parent.parent
# docs/migrating.md: "**After** (`examples/...py`)...:" then a python block, literally in that file.
AFTER_SNIPPET = re.compile(
    r"^\*\*After\*\* \(`([^`]+)`\)[^\n]*:\n\n```python\n(.*?)^```", re.MULTILINE | re.DOTALL
)
BEFORE_SNIPPET = re.compile(
    r"^\*\*Before\*\*[^\n]*:\n\n```python\n(.*?)^```", re.MULTILINE | re.DOTALL
)


async def test_web_app_and_job_share_one_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'notes.db'}"
    monkeypatch.setenv("NOTES_DB_URL", url)
    # First import in this process (nothing else imports the examples): the Database reads
    # NOTES_DB_URL now. Reloading instead would redefine the SQLModel table.
    notes_db = importlib.import_module("examples.notes_db")
    notes_app = importlib.import_module("examples.notes_app")
    archive_job = importlib.import_module("examples.archive_job")
    assert notes_db.db.config.url == url
    assert notes_app.db is notes_db.db is archive_job.db

    app = notes_app.app
    async with notes_app.lifespan(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://notes") as client:
            created = await client.post("/notes", params={"text": "water the plants"})
            assert created.status_code == 201
            note_id = created.json()["id"]
            assert (await client.get(f"/notes/{note_id}")).json()["text"] == "water the plants"

            # The job runs while the app is up, with the same Database and its own session.
            assert await archive_job.archive_older_than(timedelta(0)) == 1
            assert (await client.get("/notes")).json() == []
            assert (await client.get(f"/notes/{note_id}")).json()["archived"] is True


async def test_migrated_app_and_jobs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKS_DB_URL", f"sqlite+aiosqlite:///{tmp_path / 'tasks.db'}")
    app_module = importlib.import_module("examples.migrating.app")
    jobs = importlib.import_module("examples.migrating.jobs")
    models = importlib.import_module("examples.migrating.models")
    assert app_module.db is jobs.db

    app = app_module.app
    async with app_module.lifespan(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://tasks") as client:
            first = await client.post("/tasks", json={"title": "Write the copy"})
            assert first.status_code == 201
            task_id = first.json()["id"]
            await client.post("/tasks", json={"title": "Fix the header"})
            assert (await client.get(f"/tasks/{task_id}")).json()["assignee"] is None

            worker_id = await jobs.add_worker("build-agent")  # a job, while the app is up
            assert await jobs.assign_open_tasks(worker_id) == 2

            task = (await client.get(f"/tasks/{task_id}")).json()
            assert task["assignee"] == {"id": worker_id, "name": "build-agent"}
            assignee = await client.get(f"/tasks/{task_id}/assignee")
            assert assignee.json() == {"id": worker_id, "name": "build-agent"}

            done = await client.patch(f"/tasks/{task_id}", params={"completed": True})
            assert done.json()["is_completed"] is True
            listed = await client.get("/tasks", params={"skip": 1, "limit": 5})
            assert [item["title"] for item in listed.json()] == ["Fix the header"]
            assert (await client.get("/tasks/99")).status_code == 404
            assert (await client.get("/tasks/99/assignee")).status_code == 404

        # The tutorial's crash, `task.assignee` on an unloaded relationship, names the fix.
        async with app_module.db.read_session() as session:
            stored = await session.get(models.Task, task_id)
            assert stored is not None
            with pytest.raises(LazyLoadError, match=r"Task\.assignee is not loaded"):
                _ = stored.assignee


def test_migrated_job_script(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'tasks.db'}"
    create = "from examples.migrating.models import Base; import sqlalchemy as sa; "
    create += f"Base.metadata.create_all(sa.create_engine('sqlite:///{tmp_path / 'tasks.db'}'))"
    env = {**os.environ, "TASKS_DB_URL": url}
    subprocess.run([sys.executable, "-c", create], cwd=ROOT, env=env, check=True, timeout=60)
    done = subprocess.run(
        [sys.executable, "-m", "examples.migrating.jobs"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout == "assigned 0 tasks\n"


def test_migrated_app_tests_pass_on_the_plugin() -> None:
    # The guide's "tests" snippet, run as a user runs it: its own pytest process, the plugin
    # loaded through its entry point, the repository's pytest configuration (anyio auto mode).
    env = {key: value for key, value in os.environ.items() if key != "TASKS_DB_URL"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "examples/migrating"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout


def test_every_after_snippet_of_the_guide_is_example_code() -> None:
    guide = (ROOT / "docs" / "migrating.md").read_text()
    afters = AFTER_SNIPPET.findall(guide)
    befores = BEFORE_SNIPPET.findall(guide)
    assert len(afters) >= 7, "the guide lost its before/after pairs"
    assert len(befores) >= 6
    # No python block escapes the check by a label the patterns do not match.
    assert guide.count("```python\n") == len(afters) + len(befores)
    for path, snippet in afters:
        source = (ROOT / path).read_text()
        assert snippet in source, (
            f"docs/migrating.md shows code that {path} does not have:\n{snippet}"
        )


async def test_plain_sqlalchemy_app_and_jobs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BOOKMARKS_DB_URL", f"sqlite+aiosqlite:///{tmp_path / 'bookmarks.db'}")
    plain_app = importlib.import_module("examples.plain_app")
    app = plain_app.app
    async with plain_app.lifespan(app):
        async with plain_app.db.session() as session:  # a plain SQLAlchemy session, no exec()
            assert type(session).__mro__[1] is AsyncSession
            assert not hasattr(session, "exec")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://plain") as client:
            data = {"url": "https://docs.sqlalchemy.org", "title": "SQLAlchemy docs"}
            created = await client.post("/bookmarks", json=data)
            assert created.status_code == 201
            assert (await client.post("/bookmarks", json=data)).status_code == 409
            bookmark = (await client.get(f"/bookmarks/{created.json()['id']}")).json()
            assert bookmark["title"] == "SQLAlchemy docs"
            found = await client.get("/bookmarks", params={"q": "docs"})
            assert [item["id"] for item in found.json()] == [bookmark["id"]]
            assert (await client.get("/bookmarks/99")).status_code == 404

            assert await plain_app.count_bookmarks() == 1
            assert await plain_app.forget("SQLAlchemy") == [bookmark["id"]]
            assert (await client.get("/bookmarks")).json() == []
