"""How each app under test is started: import path, environment, workers."""

from __future__ import annotations

import secrets
from pathlib import Path

from bench.databases import asyncpg_dsn
from bench.servers import AppSpec

REPO_ROOT = Path(__file__).resolve().parent.parent


def raw(url: str, name: str = "raw") -> AppSpec:
    return AppSpec(
        name=name,
        asgi_app="bench.apps.raw:app",
        env={"BENCH_DATABASE_URL": asyncpg_dsn(url), "PYTHONPATH": str(REPO_ROOT)},
    )


def tutorial(url: str, name: str = "tutorial") -> AppSpec:
    return AppSpec(
        name=name,
        asgi_app="bench.apps.tutorial:app",
        env={"BENCH_DATABASE_URL": url, "PYTHONPATH": str(REPO_ROOT)},
    )


def taskyard(
    url: str | None,
    name: str = "taskyard",
    *,
    workers: int = 1,
    extra_env: dict[str, str] | None = None,
    workdir: Path | None = None,
) -> AppSpec:
    """taskyard as ``taskyard serve`` runs it: the app factory from the environment.

    ``serve`` puts the database URL and one cursor-signing key for all workers into the
    environment and calls ``uvicorn.run("taskyard.app:create_app_from_env", factory=True)``;
    this does the same through uvicorn's command line, so that the loop, the HTTP parser and
    the access log are set like the other apps'. Migrations are applied before (``taskyard
    migrate``), as ``serve`` would. *url* None: taskyard's default, ``./taskyard.db`` in
    *workdir*.
    """
    env = {"TASKYARD_SECRET_KEY": secrets.token_urlsafe(32), **(extra_env or {})}
    if url is not None:
        env["TASKYARD_DATABASE_URL"] = url
    return AppSpec(
        name=name,
        asgi_app="taskyard.app:create_app_from_env",
        env=env,
        workers=workers,
        factory=True,
        workdir=workdir,
    )
