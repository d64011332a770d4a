"""Each app under test as a uvicorn subprocess on a loopback port.

Every app runs the way the issue prescribes: ``uvicorn --loop uvloop --http httptools
--no-access-log --workers N``. The process gets its own session (process group), so that a
multi-worker server can be stopped as a whole, and its output goes to a log file.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.ports import free_port

READY_TIMEOUT_S = 60.0  # migrations are applied before; this is import + pool + bind
STOP_GRACE_S = 10.0


@dataclass(frozen=True)
class AppSpec:
    """What to start: an ASGI import path, its environment, and its worker count."""

    name: str
    asgi_app: str
    env: Mapping[str, str]
    workers: int = 1
    factory: bool = False
    ready_path: str = "/health/ready"
    workdir: Path | None = None  # the current directory of the server (relative SQLite paths)
    python: str | None = None  # the interpreter; None: this one (the peers have their own)


@dataclass
class RunningApp:
    spec: AppSpec
    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    @property
    def name(self) -> str:
        return self.spec.name

    def log_tail(self, characters: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-characters:]

    def serving_pids(self) -> list[int]:
        """The processes that answer requests: the worker children, or the server itself."""
        children = _children(self.process.pid)
        return children or [self.process.pid]

    def resident_kib(self) -> int:
        """Resident set size (VmRSS) of the serving process(es), summed, in KiB."""
        return sum(resident_kib(pid) for pid in self.serving_pids())

    def cpu_seconds(self) -> float:
        """User + system CPU time the server has used so far, workers included."""
        return sum(cpu_seconds(pid) for pid in {self.process.pid, *self.serving_pids()})


def resident_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (``/proc/<pid>/stat`` fields 14 and 15), in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # the name in parentheses may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    if not path.exists():
        return []
    # uvicorn's multiprocess supervisor spawns its workers through multiprocessing, which
    # may add a resource tracker; the workers are the children that run uvicorn's server.
    pids = [int(child) for child in path.read_text().split()]
    return [child for child in pids if "resource_tracker" not in _cmdline(child)]


def _cmdline(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    return ""


def uvicorn_command(spec: AppSpec, port: int) -> list[str]:
    command = [
        spec.python or sys.executable,
        "-m",
        "uvicorn",
        spec.asgi_app,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--workers",
        str(spec.workers),
        "--log-level",
        "warning",
    ]
    if spec.factory:
        command.append("--factory")
    return command


@contextlib.contextmanager
def serve(
    spec: AppSpec,
    logdir: Path,
    *,
    wrap: tuple[str, ...] = (),
    headers: Mapping[str, str] | None = None,
) -> Iterator[RunningApp]:
    """Start *spec* under uvicorn, wait until it answers, stop it (SIGINT, then SIGKILL) after.

    *wrap* prefixes the Python command line, e.g. ``-m cProfile -o out.prof`` for profiling.
    """
    port = free_port()
    log_path = logdir / f"{spec.name}-{port}.log"
    command = uvicorn_command(spec, port)
    if wrap:
        command = [command[0], *wrap, *command[1:]]
    # The spec is the whole configuration: nothing of ours (TASKYARD_*, BENCH_*) leaks in.
    inherited = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("TASKYARD_", "BENCH_"))
    }
    env = {**inherited, "PYTHONUNBUFFERED": "1", **spec.env}
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=spec.workdir,
            start_new_session=True,
        )
    app = RunningApp(spec, process, f"http://127.0.0.1:{port}", log_path)
    try:
        _wait_ready(app, headers or {})
        yield app
    finally:
        stop(app)


@contextlib.contextmanager
def serve_many(
    specs: Sequence[tuple[AppSpec, Mapping[str, str] | None]], logdir: Path
) -> Iterator[list[RunningApp]]:
    """Start every app of *specs* (each with the headers its ready check sends) at once.

    They start side by side, so the slowest start-up is waited for once, not each in turn;
    all are stopped at the end, and all that did start are stopped if one fails to.
    """
    managers = [serve(spec, logdir, headers=headers) for spec, headers in specs]
    with contextlib.ExitStack() as stack:
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(managers))) as pool:
            futures = [pool.submit(manager.__enter__) for manager in managers]
            concurrent.futures.wait(futures)
        running = []
        for manager, future in zip(managers, futures, strict=True):
            if future.exception() is None:
                stack.push(manager.__exit__)
                running.append(future.result())
        for future in futures:
            error = future.exception()
            if error is not None:
                raise error
        yield running


def _wait_ready(app: RunningApp, headers: Mapping[str, str]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    last = "no answer yet"
    while time.monotonic() < deadline:
        if app.process.poll() is not None:
            raise RuntimeError(
                f"{app.name} exited with {app.process.returncode} before it was ready:\n"
                f"{app.log_tail()}"
            )
        try:
            response = httpx.get(app.base_url + app.spec.ready_path, headers=headers, timeout=2)
            if response.status_code == 200:
                return
            last = f"{response.status_code} {response.text[:300]}"
        except httpx.HTTPError as error:
            last = repr(error)
        time.sleep(0.1)
    stop(app)
    raise RuntimeError(f"{app.name} not ready after {READY_TIMEOUT_S}s ({last}):\n{app.log_tail()}")


def stop(app: RunningApp) -> None:
    """SIGINT to the server's process group (uvicorn shuts down cleanly), SIGKILL if it hangs.

    SIGINT rather than SIGTERM so that a ``python -m cProfile`` wrapper still writes its
    profile: uvicorn handles both the same way.
    """
    if app.process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(app.process.pid, signal.SIGINT)
    try:
        app.process.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(app.process.pid, signal.SIGKILL)
        app.process.wait(timeout=10)
