"""The queue section (issue 11): agents living on taskyard, claim -> complete.

16 agents, each a loop over HTTP. Batch 1: claim one task, complete it. Batch 10: claim up to
10 (``"limit": 10``) and complete them in one request (``POST /tasks/complete``); a third
kind, ``10 + single completes``, claims 10 and completes each with its own request, to show
what the batch of completions is worth. Measured: tasks completed per second, per backend and batch
size, and the server's CPU per task. The stock of pending tasks is reset before each run so
that every run starts alike. Figures are kept as plain dicts under ``payload["queue"]``,
one list per measurement kind, so that more kinds (the idle agents of ``wait_seconds``) can
join the section beside ``throughput``.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import update
from sqlalchemy.ext.asyncio import create_async_engine

from bench.databases import TASKS
from bench.servers import RunningApp
from taskyard.tasks.models import TaskStatus

AGENTS = 16
KINDS = ("1", "10", "10 + single completes")
GOAL_RATIO = 5.0  # the goal: batch 10 at least 5x batch 1


@dataclass(frozen=True)
class Throughput:
    backend: str
    kind: str
    round: int
    tasks: int
    requests: int
    seconds: float
    server_cpu_s: float
    failures: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "kind": self.kind,
            "round": self.round,
            "tasks": self.tasks,
            "requests": self.requests,
            "seconds": round(self.seconds, 3),
            "tasks_per_second": round(self.tasks / self.seconds, 1),
            "server_cpu_ms_per_task": (
                round(1000 * self.server_cpu_s / self.tasks, 3) if self.tasks else None
            ),
            "failures": self.failures,
        }


async def reset_stock(url: str, project_id: int) -> None:
    """Every task of the claims project pending and due again, without attempts or result."""
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                update(TASKS)
                .where(TASKS.c.project_id == project_id)
                .values(
                    status=TaskStatus.PENDING,
                    assignee_id=None,
                    lease_expires_at=None,
                    result=None,
                    attempts=0,
                    claimed_at=None,
                    version=1,
                )
            )
    finally:
        await engine.dispose()


async def _agents(
    base_url: str, api_key: str, worker_ids: Sequence[int], kind: str, duration_s: float
) -> tuple[int, int, int, float]:
    """Run the agents for *duration_s*; (tasks completed, requests, failures, seconds)."""
    headers = {"Authorization": f"Bearer {api_key}"}
    limits = httpx.Limits(
        max_connections=len(worker_ids), max_keepalive_connections=len(worker_ids)
    )
    completed = requests = failures = 0
    async with httpx.AsyncClient(
        base_url=base_url, headers=headers, limits=limits, timeout=30
    ) as client:
        deadline = time.monotonic() + duration_s

        async def agent(worker_id: int) -> None:
            nonlocal completed, requests, failures
            claim: dict[str, Any] = {"worker_id": worker_id, "lease_seconds": 600}
            batch = kind != "1"
            if batch:
                claim["limit"] = 10
            while time.monotonic() < deadline:
                response = await client.post("/api/v1/tasks/claim", json=claim)
                requests += 1
                if response.status_code == 204:
                    return  # the stock ran out: the run is sized too small
                if response.status_code != 200:
                    failures += 1
                    continue
                body = response.json()
                tasks = body["items"] if batch else [body]
                if not tasks:
                    return
                if kind == "10":
                    items = [{"id": task["id"], "result": {"ok": True}} for task in tasks]
                    done = await client.post(
                        "/api/v1/tasks/complete", json={"worker_id": worker_id, "items": items}
                    )
                    requests += 1
                    if done.status_code == 200:
                        completed += len(tasks)
                    else:
                        failures += len(tasks)
                    continue
                for task in tasks:
                    done = await client.post(
                        f"/api/v1/tasks/{task['id']}/complete",
                        json={"worker_id": worker_id, "result": {"ok": True}},
                    )
                    requests += 1
                    if done.status_code == 200:
                        completed += 1
                    else:
                        failures += 1

        started = time.monotonic()
        await asyncio.gather(*(agent(worker_id) for worker_id in worker_ids))
        elapsed = time.monotonic() - started
    return completed, requests, failures, elapsed


def measure_throughput(
    backends: Sequence[tuple[str, RunningApp, str, int, Sequence[int], str]],
    duration_s: float,
    rounds: int,
    progress: Callable[[str], None],
) -> list[Throughput]:
    """Interleaved rounds over every (backend, batch): reset the stock, run the agents.

    *backends*: (name, served app, database URL, claims project id, worker ids, API key).
    """
    results = []
    for round_number in range(1, rounds + 1):
        for name, app, url, project_id, worker_ids, api_key in backends:
            for kind in KINDS:
                asyncio.run(reset_stock(url, project_id))
                cpu_before = app.cpu_seconds()
                tasks, requests, failures, seconds = asyncio.run(
                    _agents(app.base_url, api_key, worker_ids[:AGENTS], kind, duration_s)
                )
                result = Throughput(
                    backend=name,
                    kind=kind,
                    round=round_number,
                    tasks=tasks,
                    requests=requests,
                    seconds=seconds,
                    server_cpu_s=app.cpu_seconds() - cpu_before,
                    failures=failures,
                )
                results.append(result)
                shown = result.as_dict()
                progress(
                    f"[queue] {name} batch {kind} round {round_number}: "
                    f"{shown['tasks_per_second']} tasks/s, "
                    f"{shown['server_cpu_ms_per_task']} ms server CPU/task, "
                    f"{failures} failures"
                )
    return results


def summarize(results: Sequence[Throughput]) -> dict[str, Any]:
    """Median tasks/s and server CPU per task, per backend and kind; each kind over batch 1."""
    summary: dict[str, Any] = {"agents": AGENTS, "goal_ratio": GOAL_RATIO, "backends": {}}
    for backend in dict.fromkeys(result.backend for result in results):
        figures: dict[str, Any] = {}
        for kind in KINDS:
            runs = [r for r in results if (r.backend, r.kind) == (backend, kind)]
            if not runs:
                continue
            cpu = [1000 * r.server_cpu_s / r.tasks for r in runs if r.tasks]
            figures[kind] = {
                "tasks_per_second": round(statistics.median(r.tasks / r.seconds for r in runs), 1),
                "server_cpu_ms_per_task": round(statistics.median(cpu), 3) if cpu else None,
            }
        base = figures.get("1")
        for figure in figures.values():
            if base and base["tasks_per_second"]:
                figure["vs_batch_1"] = round(
                    figure["tasks_per_second"] / base["tasks_per_second"], 2
                )
            if base and base["server_cpu_ms_per_task"] and figure["server_cpu_ms_per_task"]:
                figure["vs_batch_1_by_cpu"] = round(
                    base["server_cpu_ms_per_task"] / figure["server_cpu_ms_per_task"], 2
                )
        summary["backends"][backend] = figures
    return summary
