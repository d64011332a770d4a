"""The app's one `Database`, shared by the web app, the jobs and the tests."""

from __future__ import annotations

from sessionwise import Database, DatabaseSettings

# Built at import, opens nothing: FastAPI(lifespan=...) or `async with db:` starts it.
db = Database(settings=DatabaseSettings(_env_prefix="TASKS_DB_"))  # TASKS_DB_URL, ...
