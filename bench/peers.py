"""``bench/.peers-venv``: the environment the peer libraries run in, kept out of the lock.

fastapi-sqla 4.0.1 pins ``fastapi<0.142`` (and ``asyncpg<0.32``); its users install it next to
today's FastAPI regardless, and so does this: the project's own FastAPI, SQLAlchemy, asyncpg,
pydantic and server versions (read from ``uv.lock``, so the peers run on exactly what taskyard
runs on), advanced-alchemy 1.12.0 with its dependencies, and the fastapi-sqla wheel with
``--no-deps`` plus the two run-time dependencies it imports (``deprecated``, ``structlog``).
Every version is pinned, so a fresh machine builds the same environment (``uv``, PyPI).

The environment is rebuilt only when what it should hold changes (a stamp file records it),
and checked after every build: a peer that moved FastAPI or SQLAlchemy off the lock's
version fails the build instead of measuring something else.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PEERS_VENV = REPO_ROOT / "bench" / ".peers-venv"
STAMP = PEERS_VENV / "bench-peers.json"
# The project's versions of these, from uv.lock: what every app of the section runs on.
FROM_LOCK = (
    "fastapi",
    "starlette",
    "pydantic",
    "pydantic-core",
    "sqlalchemy",
    "greenlet",
    "asyncpg",
    "uvicorn",
    "uvloop",
    "httptools",
)
PEERS = ("advanced-alchemy==1.12.0",)
NO_DEPS = ("fastapi-sqla==4.0.1",)
# What fastapi-sqla imports at run time (its other requirements are extras or pins we skip).
NO_DEPS_NEEDS = ("deprecated==1.3.1", "wrapt==2.5.2", "structlog==26.1.0")


def locked_versions(names: tuple[str, ...] = FROM_LOCK) -> dict[str, str]:
    lock = tomllib.loads((REPO_ROOT / "uv.lock").read_text())
    versions = {row["name"]: row["version"] for row in lock["package"] if "version" in row}
    missing = [name for name in names if name not in versions]
    if missing:
        raise RuntimeError(f"uv.lock has no {', '.join(missing)}")
    return {name: versions[name] for name in names}


def requirements() -> tuple[list[str], list[str]]:
    """(installed with dependencies, installed without), all pinned."""
    pinned = [f"{name}=={version}" for name, version in locked_versions().items()]
    return [*pinned, *PEERS, *NO_DEPS_NEEDS], list(NO_DEPS)


def peers_python() -> Path:
    return PEERS_VENV / "bin" / "python"


def _uv() -> list[str]:
    # As the Makefile finds it: on PATH, else the system Python's module (`make install`
    # installs it there when it is missing).
    found = shutil.which("uv")
    return [found] if found else ["python3", "-m", "uv"]


def _run(command: list[str]) -> str:
    # Our own interpreter's environment would point uv at the project's venv.
    env = {key: value for key, value in os.environ.items() if key != "VIRTUAL_ENV"}
    completed = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if completed.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} exited {completed.returncode}:\n"
            f"{completed.stdout}\n{completed.stderr}"
        )
    return completed.stdout


def installed_versions(python: Path) -> dict[str, str]:
    listing = _run([*_uv(), "pip", "list", "--format", "json", "--python", str(python)])
    return {row["name"].lower(): row["version"] for row in json.loads(listing)}


def ensure_peers_venv() -> Path:
    """Build (or reuse) ``bench/.peers-venv``; returns its python."""
    with_deps, without_deps = requirements()
    wanted = {"with_deps": with_deps, "no_deps": without_deps, "python": sys.version}
    digest = hashlib.sha256(json.dumps(wanted, sort_keys=True).encode()).hexdigest()
    python = peers_python()
    if python.exists() and STAMP.exists() and json.loads(STAMP.read_text()) == {"sha256": digest}:
        return python
    shutil.rmtree(PEERS_VENV, ignore_errors=True)
    _run([*_uv(), "venv", "--quiet", "--python", sys.executable, str(PEERS_VENV)])
    _run([*_uv(), "pip", "install", "--quiet", "--python", str(python), *with_deps])
    _run([*_uv(), "pip", "install", "--quiet", "--no-deps", "--python", str(python), *without_deps])
    installed = installed_versions(python)
    for name, version in locked_versions().items():
        if installed.get(name) != version:
            raise RuntimeError(
                f"bench/.peers-venv has {name} {installed.get(name)}, the lock {version}: "
                "a peer moved it"
            )
    STAMP.write_text(json.dumps({"sha256": digest}))
    return python


def peer_versions() -> dict[str, str]:
    """The peers' versions as installed (for the report)."""
    installed = installed_versions(peers_python())
    return {name: installed[name] for name in ("fastapi-sqla", "advanced-alchemy")}


if __name__ == "__main__":
    print(ensure_peers_venv())
