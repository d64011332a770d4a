"""An app with its real lifespan (metered Database, real pools), a user, and a scrape helper."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider

from sessionwise import Database, DatabaseConfig
from taskyard.app import create_app
from taskyard.migrate import upgrade
from taskyard.settings import Settings
from tests.sessionwise.metrics.scrape import Scrape
from tests.taskyard.conftest import Actor, create_actor

BASE = "http://taskyard"


@dataclass
class Operated:
    app: FastAPI
    db: Database
    actor: Actor

    def client(self, *, client: tuple[str, int] = ("127.0.0.1", 50000)) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.app, client=client, raise_app_exceptions=False)
        return httpx.AsyncClient(transport=transport, base_url=BASE, headers=self.actor.headers)

    async def scrape(self) -> Scrape:
        async with self.client() as client:
            response = await client.get("/metrics")
        assert response.status_code == 200, response.text
        return Scrape(response.text)


@asynccontextmanager
async def operated_app(
    url: str,
    *,
    tracer_provider: TracerProvider | None = None,
    database: dict[str, Any] | None = None,
    **settings: Any,
) -> AsyncIterator[Operated]:
    """taskyard on *url* (migrated) with its own lifespan: metrics on, nothing isolated."""
    config = DatabaseConfig(application_name="taskyard-test", **(database or {}))
    app = create_app(
        Settings(database_url=url, database=config, **settings), tracer_provider=tracer_provider
    )
    async with app.router.lifespan_context(app):
        db = app.state.sessionwise_database
        assert isinstance(db, Database)
        await upgrade(db)
        actor = await create_actor(db, "operator")
        yield Operated(app, db, actor)
