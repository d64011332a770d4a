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


# -- the library section (issue 15): one contract, no auth ------------------------------------

LIBRARY_APPS = ("ceiling", "tutorial", "fastapi-sqla", "advanced-alchemy", "sessionwise")
"""The library section's apps, in the order of its tables: the ceiling first."""
PEER_APPS = frozenset({"fastapi-sqla", "advanced-alchemy"})


def ceiling(url: str, name: str = "ceiling") -> AppSpec:
    """FastAPI + pydantic on a bare asyncpg pool (`bench.apps.library.ceiling`)."""
    return AppSpec(
        name=name,
        asgi_app="bench.apps.library.ceiling:app",
        env={"BENCH_DATABASE_URL": asyncpg_dsn(url), "PYTHONPATH": str(REPO_ROOT)},
    )


def library(app: str, url: str, peers_python: str | None = None) -> AppSpec:
    """One app of the library section on the database *url* (SQLAlchemy, asyncpg).

    The peers run on *peers_python*, the interpreter of ``bench/.peers-venv``.
    """
    if app == "ceiling":
        return ceiling(url)
    path = {"PYTHONPATH": str(REPO_ROOT)}
    if app == "tutorial":
        return AppSpec(
            name=app,
            asgi_app="bench.apps.library.tutorial:app",
            env={"BENCH_DATABASE_URL": url, **path},
        )
    if app == "sessionwise":
        return AppSpec(
            name=app,
            asgi_app="bench.apps.library.on_sessionwise:app",
            env={"BENCH_DATABASE_URL": url, **path},
        )
    if app not in PEER_APPS:
        raise ValueError(f"no library app {app!r}; one of {', '.join(LIBRARY_APPS)}")
    if peers_python is None:
        raise ValueError(f"{app} runs on the peers' interpreter: pass peers_python")
    if app == "fastapi-sqla":
        # Its configuration is the environment: `sqlalchemy_` + create_engine's keywords.
        return AppSpec(
            name=app,
            asgi_app="bench.apps.library.on_fastapi_sqla:app",
            env={"sqlalchemy_url": url, **path},
            python=peers_python,
        )
    return AppSpec(
        name=app,
        asgi_app="bench.apps.library.on_advanced_alchemy:app",
        env={"BENCH_DATABASE_URL": url, **path},
        python=peers_python,
    )
