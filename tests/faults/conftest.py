"""Fixtures for fault tests: a throwaway PostgreSQL cluster and taskyard served by uvicorn.

The cluster is shared by the whole faults session (``initdb`` once). The schema is made once,
by the CLI (``taskyard users create`` applies the migrations, then creates the users), in a
template database; every test gets a clone of it (``CREATE DATABASE ... TEMPLATE``, a file
copy), so a test that restarts the cluster or corrupts its data leaves nothing behind for the
next one, and no test pays for migrations and CLI start-up again.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.postgres_cluster import PostgresCluster, throwaway_cluster
from tests.support.served_app import ServedApp, User, create_user_with_cli, serve_taskyard

# taskyard bounds every lock wait by default (lock_timeout, statement_timeout: a 503 or 504
# within seconds). Tests whose scenario is a request that stays blocked behind a lock for as
# long as the test holds it (to exhaust the pool, to be in flight at SIGTERM) lift the bounds.
UNBOUNDED_LOCK_WAITS = {
    "TASKYARD_DATABASE__LOCK_TIMEOUT": "600",
    "TASKYARD_DATABASE__STATEMENT_TIMEOUT": "600",
}


@dataclass(frozen=True)
class Template:
    """A migrated database with two users, to clone from."""

    name: str
    owner: User
    stranger: User  # a second user, for "another user's data" checks


@pytest.fixture(scope="session")
def cluster() -> Iterator[PostgresCluster]:
    """A PostgreSQL cluster of our own, which tests may stop and restart."""
    with throwaway_cluster() as made:
        yield made


@pytest.fixture(scope="session")
def template(cluster: PostgresCluster) -> Template:
    name = "faults_template"
    cluster.create_database(name)
    owner = create_user_with_cli(cluster.url(name), "owner")
    stranger = create_user_with_cli(cluster.url(name), "stranger")
    return Template(name=name, owner=owner, stranger=stranger)


@contextlib.contextmanager
def cloned_database(cluster: PostgresCluster, template: Template) -> Iterator[str]:
    """A fresh copy of the template database, as a SQLAlchemy URL; dropped at the end."""
    if not cluster.is_running():  # a test that failed mid-outage must not break the next one
        cluster.start()
    name = f"faults_{uuid.uuid4().hex[:10]}"
    cluster.psql(f'CREATE DATABASE "{name}" TEMPLATE "{template.name}"')
    try:
        yield cluster.url(name)
    finally:
        if not cluster.is_running():
            cluster.start()
        cluster.drop_database(name)


@contextlib.contextmanager
def serve_clone(
    cluster: PostgresCluster,
    template: Template,
    workdir: Path,
    env: dict[str, str] | None = None,
    extra_args: tuple[str, ...] = (),
) -> Iterator[ServedApp]:
    """taskyard served on a fresh clone, with the template's two users."""
    with (
        cloned_database(cluster, template) as url,
        serve_taskyard(
            url,
            workdir,
            env=env,
            extra_args=extra_args,
            users=[template.owner, template.stranger],
        ) as app,
    ):
        yield app


@pytest.fixture
def served(cluster: PostgresCluster, template: Template, tmp_path: Path) -> Iterator[ServedApp]:
    """taskyard with default settings on a fresh PostgreSQL database."""
    with serve_clone(cluster, template, tmp_path) as app:
        yield app


@pytest.fixture(scope="module")
def served_module(
    cluster: PostgresCluster, template: Template, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServedApp]:
    """taskyard with default settings, shared by the tests of one module."""
    with serve_clone(cluster, template, tmp_path_factory.mktemp("served")) as app:
        yield app
