"""``python -m bench.profile``: an app under a profiler while wrk drives one call.

Two apps: ``taskyard`` (as deployed, auth on) and ``sessionwise`` (the library section's
README app, `bench.apps.library.on_sessionwise`), one worker each as in the benchmark, on a
fresh, seeded database, each requested call at 32 connections.

* ``--profiler py-spy`` (the default): the server runs as usual and ``py-spy record
  --nonblocking`` samples it while wrk runs; the folded stacks are broken down by phase
  (`bench.profile_phases`: session creation, events, guards, pool turns, commit, close, the
  per-statement path, response building) and by leaf function. py-spy does not slow the
  server down much; the samples are shares of the time the server spent on CPU.
* ``--profiler cprofile``: the server runs as ``python -m cProfile -o <file> -m uvicorn ...``,
  stopped with SIGINT (so cProfile writes its file); functions by own and cumulative time.
  cProfile slows everything down about evenly; read the shares, not the absolute times.

Reports go to ``bench/results/profile-<app>-<call>.txt`` (py-spy) or
``profile-<call>.txt`` (cProfile, taskyard).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import io
import pstats
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import apps_under_test, databases, profile_phases, sections
from bench.measure import Settings
from bench.runner import RESULTS_DIR, log
from bench.servers import AppSpec, serve
from bench.wrk import run_wrk

DATABASE = "bench_profile"


def profile_call(
    run: sections.Run,
    database: sections.PreparedDatabase,
    call: str,
    seconds: float,
    connections: int,
    top: int,
) -> str:
    profile_path = RESULTS_DIR / f"profile-{call}.prof"  # git-ignored; open with pstats
    spec = apps_under_test.taskyard(database.url, f"taskyard-profile-{call}")
    wrap = ("-m", "cProfile", "-o", str(profile_path))
    with serve(spec, run.logdir, wrap=wrap, headers=database.headers) as app:
        target = database.target(app)
        run_wrk(target, call, connections=connections, duration_s=1)  # warm-up
        measurement = run_wrk(target, call, connections=connections, duration_s=seconds)
    log(
        f"{call}: {measurement.requests_per_second:.0f} req/s under cProfile, "
        f"{measurement.requests} requests, non-2xx {measurement.failures}"
    )
    text = io.StringIO()
    stats = pstats.Stats(str(profile_path), stream=text)
    text.write(f"# {call}: {measurement.requests} requests at {connections} connections\n")
    text.write("\n## own time by package (imports excluded)\n")
    shares = own_time_by_package(stats)
    total = sum(shares.values())
    for package, seconds in sorted(shares.items(), key=lambda item: -item[1]):
        text.write(f"{package:<28} {seconds:8.3f} s {100 * seconds / total:5.1f} %\n")
    stats.strip_dirs()
    text.write("\n## by own time (tottime)\n")
    stats.sort_stats("tottime").print_stats(top)
    text.write("\n## by cumulative time\n")
    stats.sort_stats("cumulative").print_stats(top)
    return text.getvalue()


def spec_for(app: str, database: sections.PreparedDatabase, label: str) -> AppSpec:
    if app == "taskyard":
        return apps_under_test.taskyard(database.url, label)
    spec = apps_under_test.library(app, database.url)
    return dataclasses.replace(spec, name=label)


def py_spy_binary() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(found).exists():
        raise RuntimeError("py-spy is not installed: it is in the dev group (`uv sync`)")
    return found


def py_spy_call(
    run: sections.Run,
    database: sections.PreparedDatabase,
    app_name: str,
    call: str,
    seconds: float,
    connections: int,
) -> str:
    """*call* under wrk while py-spy samples the server; the phase breakdown as text."""
    folded = RESULTS_DIR / f"profile-{app_name}-{call}.folded"  # git-ignored
    spec = spec_for(app_name, database, f"{app_name}-profile-{call}")
    with serve(spec, run.logdir, headers=database.headers) as app:
        target = database.target(app)
        run_wrk(target, call, connections=connections, duration_s=1)  # warm-up
        [pid] = app.serving_pids()
        command = [
            py_spy_binary(),
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(max(1, round(seconds))),
            "--rate",
            "200",
            "--format",
            "raw",
            "--nonblocking",
            "--output",
            str(folded),
        ]
        with subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        ) as sampler:
            measurement = run_wrk(target, call, connections=connections, duration_s=seconds)
            _, errors = sampler.communicate(timeout=seconds + 60)
        if sampler.returncode != 0:
            raise RuntimeError(f"py-spy exited {sampler.returncode}: {errors.strip()}")
    log(
        f"{app_name} {call}: {measurement.requests_per_second:.0f} req/s under py-spy, "
        f"{measurement.requests} requests, non-2xx {measurement.failures}"
    )
    result = profile_phases.breakdown(folded.read_text().splitlines())
    title = (
        f"{app_name} {call}: {measurement.requests} requests at {connections} connections, "
        f"{measurement.requests_per_second:.0f} req/s"
    )
    return profile_phases.render(title, result)


def _package(filename: str) -> str:
    """``sqlalchemy`` for .../site-packages/sqlalchemy/orm/x.py; builtins stay as they are."""
    if filename == "~":
        return "builtins (C functions)"
    parts = Path(filename).parts
    for anchor in ("site-packages", "src"):
        if anchor in parts:
            index = parts.index(anchor)
            if index + 1 < len(parts):
                return parts[index + 1].removesuffix(".py")
    if "bench" in parts:
        return "bench"
    return "stdlib: " + Path(filename).stem if "python3" in filename else filename


def own_time_by_package(stats: pstats.Stats) -> dict[str, float]:
    """Seconds of own time per package, leaving out module bodies and the import system.

    Imports happen once at start-up; what is left is the cost of serving the requests.
    """
    shares: dict[str, float] = {}
    raw_stats = stats.stats  # type: ignore[attr-defined]
    for (filename, _line, function), (_cc, _nc, own, _cum, _callers) in raw_stats.items():
        if function == "<module>" or "importlib" in filename or filename.startswith("<frozen"):
            continue
        if function in ("<built-in method builtins.compile>", "<built-in method marshal.loads>"):
            continue
        if function == "<built-in method builtins.__build_class__>":
            continue
        package = _package(filename)
        shares[package] = shares.get(package, 0.0) + own
    return shares


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--calls", default="get,patch", help="comma-separated (get,patch)")
    parser.add_argument(
        "--apps", default="taskyard", help="comma-separated: taskyard, sessionwise (taskyard)"
    )
    parser.add_argument("--profiler", choices=("py-spy", "cprofile"), default="py-spy")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--top", type=int, default=45, help="functions per listing")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-profile-"))
    run = sections.Run(
        settings=Settings(duration_s=args.seconds, rounds=1, connections=(args.connections,)),
        workdir=workdir,
        progress=log,
        claim_stock=10,
        memory_checkpoints=(1, 2),
    )
    try:
        database = sections.prepare_postgres(run, DATABASE + run.database_suffix)
        for app in args.apps.split(","):
            for call in args.calls.split(","):
                if args.profiler == "py-spy":
                    report = py_spy_call(run, database, app, call, args.seconds, args.connections)
                    output = RESULTS_DIR / f"profile-{app}-{call}.txt"
                elif app == "taskyard":
                    report = profile_call(
                        run, database, call, args.seconds, args.connections, args.top
                    )
                    output = RESULTS_DIR / f"profile-{call}.txt"
                else:
                    raise SystemExit("--profiler cprofile profiles taskyard only")
                output.write_text(report)
                log(f"wrote {output}")
    finally:
        asyncio.run(databases.drop_database(DATABASE + run.database_suffix))
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
