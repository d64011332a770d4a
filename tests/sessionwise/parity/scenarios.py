"""The parity scenarios: HTTP only, so that they run alike over a served app and `api_client`.

Each scenario returns an `Outcome`: the status codes it saw, the rows stored under its prefix
(read back through the app), and what the app answered where that matters. Bodies carry a
prefix per run and scenario (``"<run>/<scenario>/..."``), so two runs can share a database; the
outcome names rows without it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx

SAFETY = 30.0  # seconds: a bound for a background job's row to appear, not a timing assertion


@dataclass
class Outcome:
    statuses: list[int] = field(default_factory=list)
    rows: list[str] = field(default_factory=list)
    answers: list[Any] = field(default_factory=list)


@dataclass
class Run:
    client: httpx.AsyncClient
    prefix: str
    outcome: Outcome = field(default_factory=Outcome)

    async def post(self, path: str, body: str, *, keep_answer: bool = False) -> None:
        """POST *body*; an exception that escapes the app counts as the 500 a server sends."""
        try:
            response = await self.client.post(path, params={"body": f"{self.prefix}{body}"})
        except Exception:  # under api_client the app's exception reaches the caller
            self.outcome.statuses.append(500)
            return
        self.outcome.statuses.append(response.status_code)
        if keep_answer:
            self.outcome.answers.append(response.json())

    async def stored(self) -> list[str]:
        response = await self.client.get("/notes", params={"prefix": self.prefix})
        assert response.status_code == 200, response.text
        return [body.removeprefix(self.prefix) for body in response.json()]

    async def read_back(self, *, waiting_for: str | None = None) -> None:
        with anyio.fail_after(SAFETY):
            rows = await self.stored()
            while waiting_for is not None and waiting_for not in rows:
                await anyio.sleep(0.05)  # the job runs after the response was sent
                rows = await self.stored()
        self.outcome.rows = rows


async def create(run: Run) -> None:
    await run.post("/notes", "one")
    await run.read_back()


async def duplicate(run: Run) -> None:
    await run.post("/notes", "same")
    await run.post("/notes", "same")
    await run.read_back()


async def read_session_refuses_a_write(run: Run) -> None:
    await run.post("/notes/from-a-read-session", "sneaky")
    await run.read_back()


async def nested_write_session(run: Run) -> None:
    await run.post("/notes/nested", "outer")
    await run.read_back()


async def two_concurrent_tasks(run: Run) -> None:
    await run.post("/notes/pair", "pair", keep_answer=True)
    await run.read_back()


async def background_job(run: Run) -> None:
    await run.post("/notes/later", "from a job")
    await run.read_back(waiting_for="from a job")


async def serializable_transaction(run: Run) -> None:
    await run.post("/notes/serializable", "strict", keep_answer=True)
    await run.read_back()


async def rolled_back_request(run: Run) -> None:
    await run.post("/notes/failing", "undone")
    await run.read_back()


SCENARIOS: dict[str, Callable[[Run], Awaitable[None]]] = {
    scenario.__name__: scenario
    for scenario in (
        create,
        duplicate,
        read_session_refuses_a_write,
        nested_write_session,
        two_concurrent_tasks,
        background_job,
        serializable_transaction,
        rolled_back_request,
    )
}


async def run_scenario(name: str, client: httpx.AsyncClient, run_name: str) -> Outcome:
    run = Run(client, prefix=f"{run_name}/{name}/")
    await SCENARIOS[name](run)
    return run.outcome
