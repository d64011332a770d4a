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
IDLE_AGENTS = 200
IDLE_WAIT_SECONDS = 30  # what the README's agent loop uses (the most allowed)
IDLE_GOAL_CPU_PERCENT = 5.0  # the goal: under 5 % of one core, and no connection


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


@dataclass(frozen=True)
class Idle:
    """200 agents claiming with ``wait_seconds`` on a project without work, for a while."""

    backend: str
    agents: int
    wait_seconds: int
    seconds: float
    server_cpu_s: float
    claims_answered: int
    max_checked_out: int
    mean_checked_out: float  # over one sample a second
    max_pool_waiting: int
    min_waiting_claims: int
    failures: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "agents": self.agents,
            "wait_seconds": self.wait_seconds,
            "seconds": round(self.seconds, 3),
            "server_cpu_percent_of_one_core": round(100 * self.server_cpu_s / self.seconds, 2),
            "claims_answered": self.claims_answered,
            "max_checked_out": self.max_checked_out,
            "mean_checked_out": round(self.mean_checked_out, 2),
            "max_pool_waiting": self.max_pool_waiting,
            "min_waiting_claims": self.min_waiting_claims,
            "failures": self.failures,
            "goal_cpu_percent": IDLE_GOAL_CPU_PERCENT,
        }


async def _idle_agents(app: RunningApp, api_key: str, window_s: float, backend: str) -> Idle:
    headers = {"Authorization": f"Bearer {api_key}"}
    limits = httpx.Limits(max_connections=IDLE_AGENTS + 10, max_keepalive_connections=None)
    answered = failures = 0
    async with httpx.AsyncClient(
        base_url=app.base_url, headers=headers, limits=limits, timeout=IDLE_WAIT_SECONDS + 30
    ) as client:
        # A project of its own, without tasks: every claim waits its whole wait_seconds.
        project = await client.post("/api/v1/projects", json={"name": f"idle-{time.time()}"})
        project_id = project.json()["id"]
        workers = [
            (
                await client.post(
                    "/api/v1/workers", json={"project_id": project_id, "name": f"idle-{n}"}
                )
            ).json()["id"]
            for n in range(20)
        ]

        async def agent(n: int) -> None:
            nonlocal answered, failures
            claim = {"worker_id": workers[n % len(workers)], "wait_seconds": IDLE_WAIT_SECONDS}
            # Spread over one wait, as agents started at different times are: in step, all
            # 200 would claim again in the same instant, every wait_seconds.
            await asyncio.sleep(n * IDLE_WAIT_SECONDS / IDLE_AGENTS)
            while True:
                response = await client.post("/api/v1/tasks/claim", json=claim)
                answered += 1
                if response.status_code != 204:
                    failures += 1

        async def ready() -> dict[str, Any]:
            body: dict[str, Any] = (await client.get("/health/ready")).json()
            return body

        agents = [asyncio.ensure_future(agent(n)) for n in range(IDLE_AGENTS)]
        try:
            for _ in range(600):  # all of them in line, or 2 minutes
                if (await ready()).get("waiting_claims", 0) >= IDLE_AGENTS:
                    break
                await asyncio.sleep(0.2)
            answered = 0
            checked_out = pool_waiting = 0
            checked_out_samples: list[int] = []
            waiting_claims = IDLE_AGENTS
            cpu_before, started = app.cpu_seconds(), time.monotonic()
            while time.monotonic() - started < window_s:
                await asyncio.sleep(1.0)  # one readiness probe a second, counted in the CPU
                body = await ready()
                checked_out = max(checked_out, body["pool"]["checked_out"])
                checked_out_samples.append(body["pool"]["checked_out"])
                pool_waiting = max(pool_waiting, body["pool"]["waiting"])
                waiting_claims = min(waiting_claims, body.get("waiting_claims", 0))
            seconds = time.monotonic() - started
            cpu = app.cpu_seconds() - cpu_before
        finally:
            for task in agents:
                task.cancel()
            await asyncio.gather(*agents, return_exceptions=True)
    return Idle(
        backend=backend,
        agents=IDLE_AGENTS,
        wait_seconds=IDLE_WAIT_SECONDS,
        seconds=seconds,
        server_cpu_s=cpu,
        claims_answered=answered,
        max_checked_out=checked_out,
        mean_checked_out=statistics.fmean(checked_out_samples or [0]),
        max_pool_waiting=pool_waiting,
        min_waiting_claims=waiting_claims,
        failures=failures,
    )


def measure_idle(
    backends: Sequence[tuple[str, RunningApp, str]],
    window_s: float,
    progress: Callable[[str], None],
) -> list[Idle]:
    """200 idle agents per backend: the server's CPU and pool while they wait.

    *backends*: (name, served app, API key). The window spans at least two rounds of
    re-claims (each agent claims again as soon as its wait ends with a 204).
    """
    results = []
    for name, app, api_key in backends:
        result = asyncio.run(_idle_agents(app, api_key, window_s, name))
        results.append(result)
        shown = result.as_dict()
        progress(
            f"[queue] {name} {IDLE_AGENTS} idle agents (wait_seconds {IDLE_WAIT_SECONDS}): "
            f"{shown['server_cpu_percent_of_one_core']} % of one core, "
            f"{shown['mean_checked_out']} connections checked out on average "
            f"(at most {result.max_checked_out}, sampled once a second), "
            f"{result.claims_answered} claims answered in {shown['seconds']} s, "
            f"{result.failures} failures"
        )
    return results
