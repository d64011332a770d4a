"""``python -m bench.metrics_plot``: what ``/metrics`` shows during a load run, drawn.

Serves taskyard (as it ships: metrics on) on a fresh, seeded PostgreSQL database, drives it
with wrk's mixed calls (get, list, create, patch) at rising concurrency, and scrapes
``/metrics`` every half second meanwhile, parsing each scrape with Prometheus's own text
parser. The last phase asks for far more connections than the pool has, so the pool's
pending requests and wait times show what exhaustion looks like. Writes the series to
``bench/results/metrics-scrape.json`` and the plot to ``docs/operations-metrics.png``
(docs/operations.md). Needs what ``make bench`` needs (PostgreSQL, wrk).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import matplotlib
from prometheus_client.parser import text_string_to_metric_families

from bench import apps_under_test, databases, sections
from bench.runner import RESULTS_DIR, log
from bench.servers import serve
from bench.wrk import run_wrk

matplotlib.use("Agg")  # files only; no display on a server
import matplotlib.pyplot as plt

REPO_ROOT = Path(__file__).resolve().parent.parent
PLOT = REPO_ROOT / "docs" / "operations-metrics.png"
SERIES = RESULTS_DIR / "metrics-scrape.json"
DATABASE = "bench_metrics_plot"
PHASES = (8, 32, 128, 512)  # wrk connections, one phase each
POOL = {"pool_name": "primary"}


def _sample(text: str) -> dict[str, Any]:
    """The numbers the plot needs from one scrape."""
    found: dict[str, Any] = {"requests": {}, "wait_buckets": {}, "sessions": {}}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            name = sample.name
            if name == "db_client_connection_count" and labels.get("pool_name") == "primary":
                found[labels["state"]] = sample.value
            elif name == "db_client_connection_max" and labels == POOL:
                found["max"] = sample.value
            elif name == "db_client_connection_pending_requests" and labels == POOL:
                found["pending"] = sample.value
            elif name == "db_client_connection_timeouts_total" and labels == POOL:
                found["timeouts"] = sample.value
            elif name == "db_client_connection_wait_time_seconds_bucket" and (
                labels.get("pool_name") == "primary"
            ):
                found["wait_buckets"][labels["le"]] = sample.value
            elif name == "http_server_request_duration_seconds_count":
                key = f"{labels['method']} {labels['route']} {labels['status_class']}"
                found["requests"][key] = sample.value
            elif name == "sessionwise_session_duration_seconds_count":
                key = labels["outcome"] if labels["cause"] == "none" else labels["cause"]
                found["sessions"][key] = found["sessions"].get(key, 0.0) + sample.value
            elif name == "taskyard_tasks_created_total":
                found["created"] = sample.value
    return found


class Scraper(threading.Thread):
    """Scrapes *base_url*/metrics every *every* seconds until stopped."""

    def __init__(self, base_url: str, every: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.base_url = base_url
        self.every = every
        self.samples: list[dict[str, Any]] = []
        self.stopped = threading.Event()
        self.started_at = time.monotonic()

    def run(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=10) as client:
            while not self.stopped.is_set():
                at = time.monotonic() - self.started_at
                response = client.get("/metrics")
                response.raise_for_status()
                self.samples.append({"t": round(at, 3), **_sample(response.text)})
                self.stopped.wait(self.every)


def _quantile(
    buckets_before: dict[str, float], buckets_after: dict[str, float], q: float
) -> float | None:
    """The *q* quantile (seconds) of the observations between two scrapes of a histogram."""
    bounds = sorted(buckets_after, key=lambda le: float(le))
    counts = [buckets_after[le] - buckets_before.get(le, 0.0) for le in bounds]
    total = counts[-1] if counts else 0.0
    if total <= 0:
        return None
    for le, count in zip(bounds, counts, strict=True):
        if count >= q * total:
            return float(le) if le != "+Inf" else float(bounds[-2])
    return None


def plot(samples: list[dict[str, Any]], phases: list[dict[str, Any]], path: Path) -> None:
    times = [s["t"] for s in samples]
    mid = [(a["t"] + b["t"]) / 2 for a, b in itertools.pairwise(samples)]
    figure, axes = plt.subplots(2, 2, figsize=(12, 7.5), sharex=True)
    requests, pool, waits, sessions = axes.flat

    routes = sorted({key for s in samples for key in s["requests"]})
    busiest = sorted(routes, key=lambda key: -samples[-1]["requests"].get(key, 0.0))[:5]
    for key in busiest:
        rates = [
            (b["requests"].get(key, 0.0) - a["requests"].get(key, 0.0)) / (b["t"] - a["t"])
            for a, b in itertools.pairwise(samples)
        ]
        requests.plot(mid, rates, label=key)
    requests.set_title("http_server_request_duration_seconds_count, rate")
    requests.set_ylabel("requests / s")
    requests.legend(fontsize=7, loc="upper left")

    pool.plot(times, [s.get("used", 0) for s in samples], label="used")
    pool.plot(times, [s.get("idle", 0) for s in samples], label="idle")
    pool.plot(times, [s.get("max", 0) for s in samples], "k--", label="max")
    pool.plot(times, [s.get("pending", 0) for s in samples], label="pending requests")
    pool.set_title("db_client_connection_count / _max / _pending_requests")
    pool.set_ylabel("connections, sessions")
    pool.legend(fontsize=7, loc="upper left")

    for q, style in ((0.5, "-"), (0.99, "--")):
        values = [
            _quantile(a["wait_buckets"], b["wait_buckets"], q)
            for a, b in itertools.pairwise(samples)
        ]
        waits.plot(
            mid, [None if v is None else v * 1000 for v in values], style, label=f"p{int(q * 100)}"
        )
    waits.set_yscale("log")
    waits.set_title("db_client_connection_wait_time_seconds (bucket bound)")
    waits.set_ylabel("ms")
    waits.legend(fontsize=7, loc="upper left")

    outcomes = sorted({key for s in samples for key in s["sessions"]})
    for key in outcomes:
        rates = [
            (b["sessions"].get(key, 0.0) - a["sessions"].get(key, 0.0)) / (b["t"] - a["t"])
            for a, b in itertools.pairwise(samples)
        ]
        sessions.plot(mid, rates, label=key)
    sessions.set_title("sessionwise_session_duration_seconds_count by outcome, rate")
    sessions.set_ylabel("sessions / s")
    sessions.legend(fontsize=7, loc="upper left")

    for axis in axes.flat:
        axis.grid(True, alpha=0.3)
        for phase in phases:
            axis.axvline(phase["start"], color="grey", alpha=0.3)
    for phase in phases:
        requests.annotate(
            f"{phase['connections']} conn.",
            (phase["start"], 1),
            xycoords=("data", "axes fraction"),
            va="top",
            fontsize=7,
        )
    for axis in axes[1]:
        axis.set_xlabel("seconds")
    figure.suptitle(
        "taskyard /metrics during a load run (wrk, mixed calls, one worker, pool of 10)"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.metrics_plot", description=__doc__)
    parser.add_argument("--phase-seconds", type=float, default=8.0, help="seconds per phase (8)")
    parser.add_argument("--replot", action="store_true", help=f"redraw from {SERIES.name}")
    args = parser.parse_args(argv)
    if args.replot:
        payload = json.loads(SERIES.read_text())
        plot(payload["samples"], payload["phases"], PLOT)
        return 0
    workdir = Path(tempfile.mkdtemp(prefix="bench-metrics-"))
    run = sections.Run(
        settings=sections.Settings(duration_s=8.0, rounds=1, connections=PHASES),
        workdir=workdir,
        progress=log,
        claim_stock=0,
        memory_checkpoints=(1, 2),
    )
    name = DATABASE + run.database_suffix  # its own, beside other runs on the same server
    try:
        database = sections.prepare_postgres(run, name)
        spec = apps_under_test.taskyard(database.url, "taskyard-metrics")
        with serve(spec, run.logdir, headers=database.headers) as app:
            target = database.target(app)
            scraper = Scraper(app.base_url)
            scraper.start()
            phases = []
            for connections in PHASES:
                start = time.monotonic() - scraper.started_at
                log(f"[metrics plot] {connections} connections for {args.phase_seconds:g} s")
                measured = run_wrk(
                    target, "mixed", connections=connections, duration_s=args.phase_seconds
                )
                phases.append(
                    {
                        "connections": connections,
                        "start": round(start, 3),
                        "requests": measured.requests,
                        "non_2xx": measured.failures,
                    }
                )
                time.sleep(1.0)
            time.sleep(1.0)
            scraper.stopped.set()
            scraper.join()
    finally:
        asyncio.run(databases.drop_database(name))
        shutil.rmtree(workdir, ignore_errors=True)
    SERIES.write_text(json.dumps({"phases": phases, "samples": scraper.samples}, indent=1) + "\n")
    plot(scraper.samples, phases, PLOT)
    log(f"wrote {SERIES.relative_to(REPO_ROOT)} and {PLOT.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
