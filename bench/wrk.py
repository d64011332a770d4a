"""Drive one HTTP call against one server with wrk, and read back what it measured."""

from __future__ import annotations

import dataclasses
import json
import shutil
import signal
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

LUA_SCRIPT = Path(__file__).parent / "lua" / "calls.lua"
WRK_BINARY = "/usr/bin/wrk"
RESULT_PREFIX = "BENCH_RESULT "
STOPPED_LINE = "BENCH_STOPPED"


@dataclass(frozen=True)
class Target:
    """Where a call goes and the data it needs: the key, the project, seeded ids, workers."""

    base_url: str
    api_key: str
    project_id: str
    ids_path: Path
    worker_ids: tuple[str, ...]


@dataclass(frozen=True)
class Measurement:
    """One wrk run: throughput, latency and how many answers were not 2xx."""

    requests_per_second: float
    requests: int
    duration_s: float
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    non_2xx: int
    socket_errors: int
    status_200: int
    status_204: int
    first_bad_status: int
    connections: int = 0

    @property
    def in_flight(self) -> float:
        """Requests in flight on average (Little's law: throughput x mean latency).

        wrk's latency figures cover completed requests only. When this is well below the
        number of connections, some connections waited for an answer the whole run, and
        the percentiles leave them out.
        """
        return self.requests_per_second * self.mean_ms / 1000

    @property
    def failures(self) -> int:
        """Answers that were not 2xx, plus requests that got no answer at all."""
        return self.non_2xx + self.socket_errors

    def as_dict(self) -> dict[str, float | int]:
        return {**asdict(self), "in_flight": round(self.in_flight, 1)}


def wrk_binary() -> str:
    found = shutil.which("wrk") or (WRK_BINARY if Path(WRK_BINARY).exists() else None)
    if found is None:
        raise RuntimeError("wrk is not installed: run `make system-deps` (Debian package wrk)")
    return found


def run_wrk(
    target: Target,
    call: str,
    *,
    connections: int,
    duration_s: float,
    threads: int = 1,
    stop_after: int = 0,
    timeout_s: float = 10.0,
) -> Measurement:
    """Run wrk for *duration_s* (or until about *stop_after* responses) and parse it.

    A count-limited run ends a little after *stop_after*: requests in flight on the other
    connections still complete; the measurement has the exact count.
    """
    # A count-limited run counts in one thread (threads do not share counters while running).
    threads = 1 if stop_after else max(1, min(threads, connections))
    command = [
        wrk_binary(),
        f"--threads={threads}",
        f"--connections={connections}",
        f"--duration={max(1, round(duration_s))}s",
        f"--timeout={round(timeout_s)}s",
        "--latency",
        f"--script={LUA_SCRIPT}",
        target.base_url,
        "--",
        call,
        target.api_key,
        target.project_id,
        str(target.ids_path),
        ",".join(target.worker_ids),
        str(stop_after),
    ]
    if stop_after > 0:
        stdout = _run_until_stopped(command)
    else:
        completed = subprocess.run(command, capture_output=True, text=True, check=False)
        if completed.returncode != 0:
            raise RuntimeError(
                f"wrk exited {completed.returncode}: {completed.stderr.strip()}\n{completed.stdout}"
            )
        stdout = completed.stdout
    return dataclasses.replace(parse_wrk_output(stdout), connections=connections)


def _run_until_stopped(command: list[str]) -> str:
    """Run a count-limited wrk: wait for the script's BENCH_STOPPED, then SIGINT it."""
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        assert process.stdout is not None
        lines = []
        for line in process.stdout:
            lines.append(line)
            if line.startswith(STOPPED_LINE):
                process.send_signal(signal.SIGINT)
                break
        rest, errors = process.communicate(timeout=60)
        if process.returncode != 0:
            raise RuntimeError(f"wrk exited {process.returncode}: {errors.strip()}")
        return "".join(lines) + rest


def parse_wrk_output(stdout: str) -> Measurement:
    """The measurement from the JSON line calls.lua prints in done()."""
    lines = [line for line in stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if not lines:
        raise RuntimeError(f"wrk printed no {RESULT_PREFIX.strip()} line:\n{stdout}")
    raw = json.loads(lines[-1][len(RESULT_PREFIX) :])
    duration_s = raw["duration_us"] / 1e6
    latency = raw["latency_us"]
    socket_errors = sum(raw["socket_errors"].values())
    return Measurement(
        # Completed requests (wrk's own count) over the measured time, as wrk reports it.
        requests_per_second=raw["requests"] / duration_s if duration_s > 0 else 0.0,
        requests=raw["requests"],
        duration_s=duration_s,
        mean_ms=latency["mean"] / 1000,
        p50_ms=latency["p50"] / 1000,
        p90_ms=latency["p90"] / 1000,
        p99_ms=latency["p99"] / 1000,
        max_ms=latency["max"] / 1000,
        non_2xx=raw["non_2xx"],
        socket_errors=socket_errors,
        status_200=raw["status_200"],
        status_204=raw["status_204"],
        first_bad_status=raw["first_bad_status"],
    )
