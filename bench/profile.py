"""``python -m bench.profile``: taskyard under cProfile while wrk drives one call.

Starts taskyard (one worker, as in the benchmark) as ``python -m cProfile -o <file> -m
uvicorn ...`` on a fresh, seeded database, runs wrk on each requested call at 32 connections,
stops the server with SIGINT (so cProfile writes its file), and prints the functions by own
time and by cumulative time. cProfile slows everything down about evenly; read the shares,
not the absolute times. (py-spy and pyinstrument would be less intrusive; neither is in the
lock file.)
"""

from __future__ import annotations

import argparse
import asyncio
import io
import pstats
import shutil
import tempfile
from pathlib import Path

from bench import apps_under_test, databases, sections
from bench.measure import Settings
from bench.runner import RESULTS_DIR, log
from bench.servers import serve
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
        for call in args.calls.split(","):
            report = profile_call(run, database, call, args.seconds, args.connections, args.top)
            output = RESULTS_DIR / f"profile-{call}.txt"
            output.write_text(report)
            log(f"wrote {output}")
    finally:
        asyncio.run(databases.drop_database(DATABASE + run.database_suffix))
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
