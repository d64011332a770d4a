"""taskyard served by uvicorn in a subprocess on a loopback port, driven over real HTTP.

Fault tests need the real server: real sockets (so a client can vanish mid-request), a real
process (so it can get SIGTERM), a real pool against a real database (so the database can go
away underneath it). `serve_taskyard` starts ``taskyard serve``, waits for ``/health/ready``,
creates a user with an API key through the CLI, and stops the process at the end: SIGTERM,
then SIGKILL if it outlives its grace period.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.ports import free_port

READY_TIMEOUT = 60.0  # seconds for migrations + uvicorn startup on a busy 2-core machine
STOP_GRACE = 10.0  # seconds between SIGTERM and SIGKILL at teardown


def taskyard_command() -> list[str]:
    """The ``taskyard`` console script of the running interpreter's environment."""
    script = Path(sys.executable).parent / "taskyard"
    if script.exists():
        return [str(script)]
    found = shutil.which("taskyard")
    if found is None:
        raise RuntimeError("the taskyard console script is not installed (run `uv sync`)")
    return [found]


def run_cli(*args: str, env: Mapping[str, str] | None = None, timeout: float = 60) -> str:
    """Run ``taskyard <args>`` to completion and return its stdout; fail loudly otherwise."""
    result = subprocess.run(
        [*taskyard_command(), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(
            f"taskyard {' '.join(args)} exited {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result.stdout


@dataclass
class User:
    email: str
    name: str
    api_key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


def create_user_with_cli(
    database_url: str, name: str | None = None, *, env: Mapping[str, str] | None = None
) -> User:
    """``taskyard users create``: a new user and the API key it printed on its last line."""
    name = name or f"user-{uuid.uuid4().hex[:8]}"
    email = f"{name}@example.test"
    stdout = run_cli(
        "users",
        "create",
        "--email",
        email,
        "--name",
        name,
        "--database-url",
        database_url,
        env=env,
    )
    lines = [line.strip() for line in stdout.splitlines() if line.strip()]
    if not lines:
        raise AssertionError("`taskyard users create` printed no API key")
    return User(email=email, name=name, api_key=lines[-1])


@dataclass
class ServedApp:
    """A running ``taskyard serve`` process."""

    process: subprocess.Popen[bytes]
    base_url: str
    database_url: str
    log_path: Path
    env: dict[str, str]
    users: list[User] = field(default_factory=list)

    @property
    def user(self) -> User:
        """The user created at startup."""
        return self.users[0]

    def create_user(self, name: str | None = None) -> User:
        """A new user and API key in the served database, made with the CLI."""
        user = create_user_with_cli(self.database_url, name, env=self.env)
        self.users.append(user)
        return user

    def client(self, user: User | None = None, **options: object) -> httpx.AsyncClient:
        """An httpx client to the server, authenticated as *user* (default: the first one)."""
        user = user or self.user
        return httpx.AsyncClient(
            base_url=self.base_url,
            headers=user.headers,
            **options,  # type: ignore[arg-type]
        )

    def log(self) -> str:
        """Everything the server wrote to stdout and stderr so far."""
        return self.log_path.read_text(errors="replace")

    def running(self) -> bool:
        return self.process.poll() is None

    def terminate(self, grace: float = STOP_GRACE) -> tuple[int | None, float]:
        """SIGTERM, wait up to *grace* seconds, then SIGKILL.

        Returns the exit code (None if it had to be killed) and the seconds it took to exit.
        """
        started = time.monotonic()
        if self.process.poll() is not None:
            return self.process.returncode, 0.0
        self.process.send_signal(signal.SIGTERM)
        try:
            code: int | None = self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            code = None
            with contextlib.suppress(ProcessLookupError):
                # The whole group: with --workers N the supervisor's children must go too.
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        return code, time.monotonic() - started


def _wait_ready(app: ServedApp, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        if not app.running():
            raise AssertionError(
                f"taskyard serve exited with {app.process.returncode} before it was ready:\n"
                f"{app.log()[-6000:]}"
            )
        try:
            response = httpx.get(f"{app.base_url}/health/ready", timeout=2)
            if response.status_code == 200:
                return
            last = f"{response.status_code} {response.text[:300]}"
        except httpx.HTTPError as error:
            last = repr(error)
        time.sleep(0.1)
    raise AssertionError(f"taskyard not ready after {timeout}s ({last}):\n{app.log()[-6000:]}")


@contextlib.contextmanager
def serve_taskyard(
    database_url: str,
    workdir: Path,
    *,
    env: Mapping[str, str] | None = None,
    extra_args: tuple[str, ...] = (),
    users: list[User] | None = None,
) -> Iterator[ServedApp]:
    """``taskyard serve`` on a free loopback port against *database_url*, ready to use.

    *env* adds ``TASKYARD_*`` settings (pool size, timeouts). *users* that already exist in
    the database (cloned from a template) are used as they are; without them one user is
    created with ``taskyard users create``. The server's output goes to a file in *workdir*,
    so tests can search it for what must never be logged.
    """
    port = free_port()
    log_path = workdir / f"taskyard-{port}.log"
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    # The test process may carry a TASKYARD_DATABASE_URL of its own; the flag decides.
    full_env.pop("TASKYARD_DATABASE_URL", None)
    command = [
        *taskyard_command(),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--database-url",
        database_url,
        *extra_args,
    ]
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=full_env,
            start_new_session=True,  # its own process group, for the SIGKILL fallback
        )
    app = ServedApp(
        process=process,
        base_url=f"http://127.0.0.1:{port}",
        database_url=database_url,
        log_path=log_path,
        env={key: value for key, value in full_env.items() if key.startswith("TASKYARD_")},
    )
    try:
        _wait_ready(app, READY_TIMEOUT)
        if users is not None:  # [] serves without creating anyone
            app.users.extend(users)
        else:
            app.create_user("owner")
        yield app
    finally:
        app.terminate()
