"""docs/performance.md from the results JSON (so the page can be rebuilt from the figures)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from bench.apps_under_test import LIBRARY_APPS
from bench.measure import CALL_TITLES, CALLS
from bench.targets import (
    LIBRARY_VS_BEST_PEER,
    LIBRARY_VS_CEILING,
    P99_CONNECTIONS,
    P99_FACTOR,
    RATIO_CONNECTIONS,
    TASKYARD_P99_VS_CEILING,
    TASKYARD_VS_CEILING,
)

NOTES_DIR = Path(__file__).parent / "notes"
STARVED_SHARE = 0.8
LIBRARY_PLOT_NAME = "performance-library.png"
SECTION_APPS = {
    "postgres": ("raw", "tutorial", "ceiling", "taskyard"),
    "library": LIBRARY_APPS,
    "sqlite": ("tutorial", "taskyard"),
    "scaling": ("1 worker", "2 workers", "4 workers + PgBouncer"),
    "claims": ("postgres", "sqlite"),
    "idempotency": ("taskyard",),
}


def _table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _mark(met: bool | None) -> str:
    return "n/a" if met is None else ("**yes**" if met else "**no**")


def _number(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _summaries(payload: dict[str, Any], section: str) -> dict[tuple[str, str, int], dict[str, Any]]:
    return {
        (row["app"], row["call"], row["connections"]): row
        for row in payload["summaries"]
        if row["section"] == section
    }


def _connections(payload: dict[str, Any], section: str) -> list[int]:
    return sorted({row["connections"] for row in payload["summaries"] if row["section"] == section})


def _note(name: str) -> str:
    path = NOTES_DIR / name
    return path.read_text().strip() if path.exists() else ""


def targets_section(payload: dict[str, Any]) -> str:
    rows = []
    for verdict in payload["targets"]:
        rows.append(
            [
                CALL_TITLES[verdict["call"]],
                _number(verdict["vs_raw"]),
                f">= {verdict['vs_raw_target']:.2f}",
                _mark(verdict["vs_raw_met"]),
                _number(verdict["vs_tutorial"]),
                f">= {verdict['vs_tutorial_target']:.1f}",
                _mark(verdict["vs_tutorial_met"]),
                _number(verdict["p99_vs_raw_at_128"]),
                _mark(verdict["p99_met"]),
                verdict["taskyard_non_2xx"],
                _number(verdict.get("vs_raw_by_cpu")),
                _number(verdict.get("vs_tutorial_by_cpu")),
            ]
        )
    header = [
        "call",
        f"taskyard / raw (c={RATIO_CONNECTIONS})",
        "target",
        "met",
        f"taskyard / tutorial (c={RATIO_CONNECTIONS})",
        "target",
        "met",
        f"p99 taskyard / raw (c={P99_CONNECTIONS})",
        f"<= {P99_FACTOR:.0f}x",
        "taskyard non-2xx",
        "by CPU/req: / raw",
        "/ tutorial",
    ]
    return _table(header, rows) + (
        "\n\nThe last two columns are the same ratios computed from each server's CPU time per "
        "request (raw's CPU per request over taskyard's): the throughput ratio the apps would "
        "show with a core each, independent of the other load on the machine."
    )


def ceiling_targets_section(payload: dict[str, Any]) -> str:
    verdicts = payload.get("ceiling_targets") or []
    if not any(
        verdict["sessionwise_vs_ceiling"] is not None or verdict["taskyard_vs_ceiling"] is not None
        for verdict in verdicts
    ):
        return "_Not run: needs the `library` and `postgres` sections._"
    rows = []
    for verdict in verdicts:
        rows.append(
            [
                CALL_TITLES[verdict["call"]],
                _number(verdict["sessionwise_vs_ceiling"]),
                _mark(verdict["sessionwise_vs_ceiling_met"]),
                _number(verdict["sessionwise_vs_best_peer"]),
                verdict["best_peer"] or "n/a",
                _mark(verdict["sessionwise_vs_best_peer_met"]),
                _number(verdict["taskyard_vs_ceiling"]),
                _mark(verdict["taskyard_vs_ceiling_met"]),
                _number(verdict["taskyard_p99_vs_ceiling_at_128"]),
                _mark(verdict["taskyard_p99_met"]),
                verdict["library_non_2xx"],
                _number(verdict.get("sessionwise_vs_ceiling_by_cpu")),
                _number(verdict.get("taskyard_vs_ceiling_by_cpu")),
            ]
        )
    header = [
        "call",
        f"sessionwise / ceiling (c={RATIO_CONNECTIONS})",
        f">= {LIBRARY_VS_CEILING:.2f}",
        "sessionwise / best peer",
        "best peer",
        f">= {LIBRARY_VS_BEST_PEER:.1f}",
        f"taskyard / ceiling (c={RATIO_CONNECTIONS})",
        f">= {TASKYARD_VS_CEILING:.2f}",
        f"p99 taskyard / ceiling (c={P99_CONNECTIONS})",
        f"<= {TASKYARD_P99_VS_CEILING:.0f}x",
        "library non-2xx",
        "by CPU/req: sessionwise",
        "taskyard",
    ]
    return _table(header, rows) + (
        "\n\nsessionwise is the library section's app written as its README teaches (no "
        "auth); taskyard is the PostgreSQL section's, as deployed (auth on), against the "
        "ceiling that runs beside it there. The last two columns: the ceiling's CPU per "
        "request over the app's."
    )


def library_ratios_section(payload: dict[str, Any]) -> str:
    """Per call, every app's throughput as a fraction of the ceiling's, and the latencies."""
    summaries = _summaries(payload, "library")
    if not summaries:
        return "_Not run._"
    postgres = _summaries(payload, "postgres")
    apps = [app for app in LIBRARY_APPS[1:] if any(key[0] == app for key in summaries)]
    header = ["call", *apps, "taskyard (auth on; PostgreSQL section)"]
    rows = []
    for call in CALLS:
        ceiling = summaries.get(("ceiling", call, RATIO_CONNECTIONS))
        cells: list[object] = [CALL_TITLES[call]]
        for app in apps:
            row = summaries.get((app, call, RATIO_CONNECTIONS))
            cells.append(_ratio_cell(row, ceiling))
        cells.append(
            _ratio_cell(
                postgres.get(("taskyard", call, RATIO_CONNECTIONS)),
                postgres.get(("ceiling", call, RATIO_CONNECTIONS)),
            )
        )
        rows.append(cells)
    return (
        f"Throughput as a fraction of the ceiling's (c={RATIO_CONNECTIONS}), each app's p99 in "
        "ms after it:\n\n"
        + _table(header, rows)
        + "\n\nEvery figure of each app, the ceiling's included:\n\n"
        + calls_section(payload, "library", ("ceiling",))
    )


def _ratio_cell(row: dict[str, Any] | None, base: dict[str, Any] | None) -> str:
    if row is None or base is None or not base["requests_per_second"]:
        return "n/a"
    ratio = row["requests_per_second"] / base["requests_per_second"]
    return f"{ratio:.2f} (p99 {row['p99_ms']:.0f})"


def calls_section(payload: dict[str, Any], section: str, reference_apps: Sequence[str]) -> str:
    """Per call and connection count: every app's medians, with ratios to the references."""
    summaries = _summaries(payload, section)
    apps = [app for app in SECTION_APPS[section] if any(key[0] == app for key in summaries)]
    header = ["call", "conns", "app", "req/s", "p50 ms", "p99 ms", "non-2xx", "CPU ms/req"]
    header += [f"/ {reference}" for reference in reference_apps]
    rows = []
    for call in CALLS:
        for connections in _connections(payload, section):
            for app in apps:
                row = summaries.get((app, call, connections))
                if row is None:
                    continue
                ratios = []
                for reference in reference_apps:
                    base = summaries.get((reference, call, connections))
                    ratio = (
                        row["requests_per_second"] / base["requests_per_second"]
                        if base and base["requests_per_second"]
                        else None
                    )
                    ratios.append(_number(ratio))
                rows.append(
                    [
                        CALL_TITLES[call],
                        connections,
                        app,
                        f"{row['requests_per_second']:.0f}",
                        _number(row["p50_ms"], 1) + _starved_mark(row),
                        _number(row["p99_ms"], 1) + _starved_mark(row),
                        row["non_2xx"] + row["socket_errors"],
                        _number(row.get("cpu_ms_per_request")),
                        *ratios,
                    ]
                )
    table = _table(header, rows)
    if any(_starved_mark(row) for row in summaries.values()):
        table += (
            "\n\n† Fewer requests were in flight than there were connections (Little's law: "
            f"req/s x mean latency < {STARVED_SHARE:.0%} of the connections): some connections "
            "got no answer during the whole run, and wrk's percentiles, which count completed "
            "requests only, leave them out. These latencies look better than they were."
        )
    return table


def _starved_mark(row: dict[str, Any]) -> str:
    in_flight = row.get("in_flight")
    if in_flight is None or in_flight >= STARVED_SHARE * row["connections"]:
        return ""
    return " †"


def claims_section(payload: dict[str, Any]) -> str:
    summaries = _summaries(payload, "claims")
    samples = [s for s in payload["samples"] if s["section"] == "claims"]
    rows = []
    for database in SECTION_APPS["claims"]:
        matching = [row for key, row in summaries.items() if key[0] == database]
        if not matching:
            continue
        row = matching[0]
        empty = sum(s["status_204"] for s in samples if s["app"] == database)
        rows.append(
            [
                f"taskyard on {'PostgreSQL' if database == 'postgres' else 'SQLite'}",
                row["connections"],
                f"{row['requests_per_second']:.0f}",
                _number(row["p50_ms"], 1),
                _number(row["p99_ms"], 1),
                row["non_2xx"] + row["socket_errors"],
                empty,
                _number(row.get("cpu_ms_per_request")),
            ]
        )
    header = [
        "app",
        "claimers",
        "claims/s",
        "p50 ms",
        "p99 ms",
        "non-2xx",
        "204 (queue empty)",
        "CPU ms/claim",
    ]
    return _table(header, rows)


def idempotency_section(payload: dict[str, Any]) -> str:
    """taskyard's create without and with an Idempotency-Key, per connection count."""
    summaries = _summaries(payload, "idempotency")
    if not summaries:
        return "_Not run._"
    rows = []
    for connections in _connections(payload, "idempotency"):
        plain = summaries.get(("taskyard", "create", connections))
        for call in ("create", "create_keyed"):
            row = summaries.get(("taskyard", call, connections))
            if row is None:
                continue
            ratio = (
                row["requests_per_second"] / plain["requests_per_second"]
                if plain and plain["requests_per_second"]
                else None
            )
            rows.append(
                [
                    CALL_TITLES[call],
                    connections,
                    f"{row['requests_per_second']:.0f}",
                    _number(row["p50_ms"], 1),
                    _number(row["p99_ms"], 1),
                    row["non_2xx"] + row["socket_errors"],
                    _number(row.get("cpu_ms_per_request")),
                    _number(ratio),
                ]
            )
    header = ["call", "conns", "req/s", "p50 ms", "p99 ms", "non-2xx", "CPU ms/req", "/ create"]
    return _table(header, rows) + (
        "\n\nEach keyed request carries a new key: the lookup (which on PostgreSQL also takes "
        "the key's advisory lock) and the record's insert, in the create's own transaction."
    )


def memory_section(payload: dict[str, Any]) -> str:
    memory = payload.get("memory") or {}
    if not memory:
        return "_Not run._"
    rows = [
        [reading["after_requests"], f"{reading['rss_kib'] / 1024:.1f}"]
        for reading in memory["readings"]
    ]
    verdict = "met" if memory["growth_percent"] < 10 else "**not met**"
    return (
        _table(["mixed requests served", "RSS MiB"], rows)
        + f"\n\nGrowth from the first to the second checkpoint: **{memory['growth_percent']:.1f}%**"
        f" (target < 10%: {verdict}); non-2xx during the run: {memory['failures']}."
    )


def queue_section(payload: dict[str, Any]) -> str:
    """Tasks/s through claim -> complete (bench.queue); more kinds of figure join below."""
    summary = (payload.get("queue") or {}).get("summary")
    if not summary:
        return "_Not run._"
    rows = []
    for backend, figures in summary["backends"].items():
        for kind, figure in figures.items():
            rows.append(
                [
                    backend,
                    kind,
                    figure["tasks_per_second"],
                    _number(figure.get("server_cpu_ms_per_task"), 3),
                    _number(figure.get("vs_batch_1")),
                    _number(figure.get("vs_batch_1_by_cpu")),
                ]
            )
    header = ["backend", "batch", "tasks/s", "CPU ms/task", "/ batch 1", "/ batch 1 by CPU"]
    return (
        f"{summary['agents']} agents, each claiming and completing over HTTP. Goal: batch 10 at "
        f"least {summary['goal_ratio']:g}x batch 1.\n\n" + _table(header, rows)
    )


def micro_section(payload: dict[str, Any]) -> str:
    micro = payload.get("micro") or {}
    if not micro:
        return "_Not run._"
    rows = [[row["name"], row["median_us"], row["iqr_us"], row["rounds"]] for row in micro["rows"]]
    return f"`{micro['command']}`\n\n" + _table(
        ["unit of work [database]", "median µs", "IQR µs", "rounds"], rows
    )


def render(payload: dict[str, Any], plot_name: str) -> str:
    settings = payload["settings"]
    machine = payload["machine"]
    versions = ", ".join(f"{name} {version}" for name, version in payload["versions"].items())
    parts = [
        "# Performance",
        "_Generated by `make bench` (`uv run python -m bench`); do not edit by hand: the prose "
        "comes from `bench/notes/`, the figures from `bench/results/latest.json`._",
        f"Run of {payload['generated_at']} on {machine['cpus']} CPUs "
        f"({machine['platform']}), load average before/after "
        f"{machine['load_before']} / {machine['load_after']}. Command: `{payload['command']}`. "
        f"Each figure is the median of {settings['rounds']} interleaved rounds of "
        f"{settings['duration_s']:g} s per app and call (wrk, {settings['wrk_threads']} thread, "
        f"connections {', '.join(str(c) for c in settings['connections'])}). {versions}.",
        "## Targets (issue 4)",
        targets_section(payload),
        "## Targets (issue 15): against the ceiling",
        ceiling_targets_section(payload),
        _note("methodology.md"),
        "## PostgreSQL: raw, tutorial, the ceiling, taskyard",
        f"![throughput against concurrency]({plot_name})",
        calls_section(payload, "postgres", ("raw", "tutorial", "ceiling")),
        "### Idempotency keys: taskyard's create without and with a key",
        idempotency_section(payload),
        "## Library section: one contract, no auth, against the ceiling",
        (
            f"![library throughput against the ceiling]({LIBRARY_PLOT_NAME})"
            if _summaries(payload, "library")
            else ""
        ),
        library_ratios_section(payload),
        "## SQLite: taskyard on its default file vs the tutorial on aiosqlite",
        calls_section(payload, "sqlite", ("tutorial",)),
        "### Claims: 16 concurrent claimers",
        claims_section(payload),
        "## Scaling: more workers, PgBouncer",
        calls_section(payload, "scaling", ("1 worker",)),
        _note("scaling.md"),
        "## Memory",
        memory_section(payload),
        "## Queue: agents through claim -> complete",
        queue_section(payload),
        _note("queue.md"),
        "## Session lifecycle micro-benchmark",
        micro_section(payload),
        _note("micro.md"),
        "## What the profile shows",
        _note("profile.md") or "_No profile yet._",
    ]
    return "\n\n".join(part for part in parts if part) + "\n"
