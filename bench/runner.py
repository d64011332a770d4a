"""One benchmark run from start to finish: databases, sections, figures, report, clean-up."""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import platform
import shutil
import tempfile
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from bench import databases, peers, sections
from bench.measure import Settings
from bench.micro import run_micro
from bench.plot import write_library_plot, write_plot, write_scaling_plot
from bench.report import render
from bench.targets import evaluate, evaluate_ceiling

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).parent / "results"
DOCS_PAGE = REPO_ROOT / "docs" / "performance.md"
PLOT = REPO_ROOT / "docs" / "performance-throughput.png"
LIBRARY_PLOT = REPO_ROOT / "docs" / "performance-library.png"
SCALING_PLOT = REPO_ROOT / "docs" / "performance-scaling.png"
SECTIONS = (
    "postgres",
    "library",
    "metrics",
    "sqlite",
    "claims",
    "scaling",
    "memory",
    "queue",
    "micro",
)
POSTGRES_DATABASES = {
    "raw": "bench_raw",
    "tutorial": "bench_tutorial",
    "ceiling": "bench_ceiling",
    "taskyard": "bench_taskyard",
}


@dataclass(frozen=True)
class Options:
    settings: Settings
    sections: tuple[str, ...]
    memory_checkpoints: tuple[int, int]
    claim_stock: int
    keep: bool
    results_path: Path
    write_docs: bool
    command: str


def log(message: str) -> None:
    stamp = datetime.datetime.now().strftime("%H:%M:%S")
    print(f"{stamp} {message}", flush=True)


def estimate_seconds(options: Options) -> float:
    """Measured time only (each wrk run), plus a rough allowance for setup per section."""
    s = options.settings
    runs = 0.0
    if "postgres" in options.sections:
        runs += 4 * 4 * len(s.connections) * s.rounds
    if "library" in options.sections:
        runs += 5 * 4 * s.rounds
    if "metrics" in options.sections:
        runs += 2 * 2 * len(s.connections) * s.rounds  # metrics off / on, get and create
    if "sqlite" in options.sections:
        runs += 2 * 4 * s.rounds
    if "claims" in options.sections:
        runs += 2 * s.rounds
    if "scaling" in options.sections:
        runs += 6 * 2 * s.rounds  # 3 worker counts x (direct, PgBouncer) x (mixed, claim)
    if "queue" in options.sections:
        runs += 2 * 3 * s.rounds  # 2 backends, 3 kinds (bench.queue.KINDS)
    return runs * (s.duration_s + 0.3) + 25 * len(options.sections)


async def _server_version() -> str:
    connection = await asyncpg.connect(databases.asyncpg_dsn(databases.ADMIN_URL))
    try:
        return str(await connection.fetchval("SHOW server_version"))
    finally:
        await connection.close()


def _versions(with_peers: bool) -> dict[str, str]:
    names = ("sqlalchemy", "fastapi", "starlette", "pydantic", "asyncpg", "aiosqlite", "uvicorn")
    found = {"python": platform.python_version()}
    found.update({name: version(name) for name in names})
    found["postgresql"] = asyncio.run(_server_version())
    if with_peers:
        found.update(peers.peer_versions())
    return found


def run(options: Options) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-run-"))
    run_state = sections.Run(
        settings=options.settings,
        workdir=workdir,
        progress=log,
        claim_stock=options.claim_stock,
        memory_checkpoints=options.memory_checkpoints,
    )
    load_before = [round(value, 2) for value in os.getloadavg()]
    started = time.monotonic()
    log(f"benchmark: {', '.join(options.sections)}; work files in {workdir}")
    log(f"estimated time: about {estimate_seconds(options) / 60:.0f} min")
    micro: dict[str, Any] = {}
    needs_postgres = {"postgres", "metrics", "claims", "scaling", "memory", "queue"}
    needs_postgres &= set(options.sections)
    created: list[str] = []
    try:
        prepared: dict[str, sections.PreparedDatabase] = {}
        for app, base_name in POSTGRES_DATABASES.items():
            name = base_name + run_state.database_suffix
            if (app == "taskyard" and needs_postgres) or "postgres" in options.sections:
                created.append(name)
                prepared[app] = sections.prepare_postgres(run_state, name)
        if "postgres" in options.sections:
            sections.postgres_section(
                run_state,
                prepared["raw"],
                prepared["tutorial"],
                prepared["ceiling"],
                prepared["taskyard"],
            )
        if "library" in options.sections:
            peers_python = str(peers.ensure_peers_venv())
            created.extend(sections.library_database_names(run_state.database_suffix).values())
            library = sections.prepare_library(run_state)
            sections.library_section(run_state, library, peers_python)
        if "metrics" in options.sections:
            sections.metrics_section(run_state, prepared["taskyard"])
        sqlite_taskyard = None
        if "sqlite" in options.sections:
            sqlite_taskyard, _ = sections.sqlite_section(run_state)
        if {"claims", "queue"} & set(options.sections) and sqlite_taskyard is None:
            directory = sections.sqlite_dir(run_state, "taskyard-sqlite")
            url = f"sqlite+aiosqlite:///{directory}/taskyard.db"
            sqlite_taskyard = sections.prepare(run_state, "taskyard-sqlite", url)
        if "claims" in options.sections:
            assert sqlite_taskyard is not None
            sections.claims_section(run_state, prepared["taskyard"], sqlite_taskyard)
        if "scaling" in options.sections:
            sections.scaling_section(run_state, prepared["taskyard"])
        if "memory" in options.sections:
            sections.memory_section(run_state, prepared["taskyard"])
        if "queue" in options.sections:
            assert sqlite_taskyard is not None
            sections.queue_section(run_state, prepared["taskyard"], sqlite_taskyard)
        if "micro" in options.sections:
            log("micro-benchmark: session lifecycle (pytest-benchmark)")
            micro = run_micro(workdir)
    finally:
        if not options.keep:
            for name in created:
                asyncio.run(databases.drop_database(name))
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log(f"kept databases {created} and {workdir}")
    log(f"measured in {(time.monotonic() - started) / 60:.1f} min")
    results = run_state.results
    return {
        "generated_at": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": options.command,
        "settings": {
            "duration_s": options.settings.duration_s,
            "rounds": options.settings.rounds,
            "connections": list(options.settings.connections),
            "warmup_s": options.settings.warmup_s,
            "wrk_threads": options.settings.wrk_threads,
            "sections": list(options.sections),
            "memory_checkpoints": list(options.memory_checkpoints),
            "claim_stock": options.claim_stock,
        },
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(terse=True),
            "load_before": load_before,
            "load_after": [round(value, 2) for value in os.getloadavg()],
        },
        "versions": _versions(with_peers="library" in options.sections),
        "targets": [verdict.as_dict() for verdict in evaluate(results)],
        "ceiling_targets": [verdict.as_dict() for verdict in evaluate_ceiling(results)],
        "summaries": [summary.as_dict() for summary in results.summaries()],
        "memory": run_state.memory,
        "queue": run_state.queue,
        "micro": micro,
        "preflight": run_state.preflight,
        "samples": [sample.as_dict() for sample in results.samples],
    }


def write_outputs(payload: dict[str, Any], options: Options) -> None:
    options.results_path.parent.mkdir(parents=True, exist_ok=True)
    options.results_path.write_text(json.dumps(payload, indent=1) + "\n")
    log(f"wrote {options.results_path.relative_to(REPO_ROOT)}")
    if options.write_docs:
        write_docs(payload)
    elif "scaling" in payload["settings"]["sections"]:
        # A quick run leaves docs/ alone; its scaling curve goes beside its JSON.
        quick_plot = options.results_path.with_name(options.results_path.stem + "-scaling.png")
        write_scaling_plot(payload, quick_plot)
        log(f"wrote {quick_plot.relative_to(REPO_ROOT)}")


def write_docs(payload: dict[str, Any]) -> None:
    write_plot(payload, PLOT)
    write_library_plot(payload, LIBRARY_PLOT)
    write_scaling_plot(payload, SCALING_PLOT)
    DOCS_PAGE.write_text(render(payload, PLOT.name, SCALING_PLOT.name))
    log(f"wrote {DOCS_PAGE.relative_to(REPO_ROOT)}, {PLOT.name} and {SCALING_PLOT.name}")
