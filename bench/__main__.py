"""``python -m bench``: the side-by-side benchmark of issue 4 (``make bench`` runs it).

Needs PostgreSQL at ``BENCH_POSTGRES_URL`` (default: postgres@127.0.0.1:5432, trust auth),
wrk and pgbouncer (``make system-deps``). It creates and drops its own databases.
"""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import sys
from types import FrameType

from bench.measure import Settings
from bench.runner import RESULTS_DIR, SECTIONS, Options, log, run, write_docs, write_outputs


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(",") if part.strip())


def parse(argv: list[str]) -> Options:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per wrk run (3)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (3)")
    parser.add_argument(
        "--connections", type=_ints, default=(8, 32, 128), help="comma-separated (8,32,128)"
    )
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds per app and call (1)")
    parser.add_argument("--wrk-threads", type=int, default=1, help="wrk threads (1)")
    parser.add_argument(
        "--sections",
        default=",".join(SECTIONS),
        help=f"comma-separated subset of {','.join(SECTIONS)}",
    )
    parser.add_argument(
        "--memory-requests",
        type=_ints,
        default=(10_000, 100_000),
        help="the two RSS checkpoints, in mixed requests (10000,100000)",
    )
    parser.add_argument(
        "--claim-stock", type=int, default=20_000, help="pending tasks per claim run (20000)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 1 round of 2 s at 32 connections, small memory checkpoints; "
        "writes bench/results/quick.json and leaves docs/ alone",
    )
    parser.add_argument("--keep", action="store_true", help="keep databases and work files")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="rebuild docs/performance.md and the plot from bench/results/latest.json",
    )
    args = parser.parse_args(argv)
    sections = tuple(name for name in args.sections.split(",") if name)
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    if args.quick:
        settings = Settings(duration_s=2.0, rounds=1, connections=(32,), warmup_s=0.5)
        memory_checkpoints = (1_000, 5_000)
    else:
        settings = Settings(
            duration_s=args.duration,
            rounds=args.rounds,
            connections=args.connections,
            warmup_s=args.warmup,
            wrk_threads=args.wrk_threads,
        )
        memory_checkpoints = args.memory_requests
    if len(memory_checkpoints) != 2 or not 0 < memory_checkpoints[0] < memory_checkpoints[1]:
        parser.error("--memory-requests: two increasing counts, e.g. 10000,100000")
    return Options(
        settings=settings,
        sections=tuple(name for name in SECTIONS if name in sections),
        memory_checkpoints=(memory_checkpoints[0], memory_checkpoints[1]),
        claim_stock=args.claim_stock,
        keep=args.keep,
        results_path=RESULTS_DIR / ("quick.json" if args.quick else "latest.json"),
        write_docs=not args.quick,
        command="python -m bench " + shlex.join(argv) if argv else "python -m bench",
    )


def _exit_on_sigterm(signum: int, _frame: FrameType | None) -> None:
    # As SystemExit, so that every `finally` runs: servers stopped, databases dropped. The
    # servers live in sessions of their own and would outlive a plain kill of this process.
    raise SystemExit(128 + signum)


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    options = parse(argv)
    if "--report-only" in argv:
        payload = json.loads((RESULTS_DIR / "latest.json").read_text())
        write_docs(payload)
        return 0
    payload = run(options)
    write_outputs(payload, options)
    for verdict in payload["targets"]:
        log(
            f"{verdict['call']:>6}: taskyard/raw {verdict['vs_raw']} "
            f"(>= {verdict['vs_raw_target']}), taskyard/tutorial {verdict['vs_tutorial']} "
            f"(>= {verdict['vs_tutorial_target']}), p99@128 x{verdict['p99_vs_raw_at_128']}"
        )
    for verdict in payload["ceiling_targets"]:
        log(
            f"{verdict['call']:>6}: sessionwise/ceiling {verdict['sessionwise_vs_ceiling']}, "
            f"sessionwise/best peer {verdict['sessionwise_vs_best_peer']} "
            f"({verdict['best_peer']}), taskyard/ceiling {verdict['taskyard_vs_ceiling']}, "
            f"p99@128 taskyard/ceiling x{verdict['taskyard_p99_vs_ceiling_at_128']}"
        )
    return 0


sys.exit(main(sys.argv[1:]))
