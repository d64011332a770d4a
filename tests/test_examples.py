"""The README's examples run: a web app and a background job sharing one Database."""

from __future__ import annotations

import importlib
from datetime import timedelta
from pathlib import Path

import httpx
import pytest


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
