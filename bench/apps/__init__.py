"""The apps taskyard is measured against, serving the same four calls with the same JSON.

* `bench.apps.raw`: Starlette and a bare asyncpg pool, one SQL statement per call (plus the
  API key lookup), the floor of what Python can do here.
* `bench.apps.tutorial`: FastAPI + SQLModel written the way the tutorial articles teach.

Both read the database URL from ``BENCH_DATABASE_URL`` and use taskyard's schema (the
runner applies taskyard's migrations to their databases too).
"""
