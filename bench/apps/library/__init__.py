"""The library section's apps (issue 15): one contract, five ways to serve it.

Every app serves the same four calls at taskyard's URLs with taskyard's task JSON (a task
embeds its project and assignee as ``{"id", "name"}``; a list is ``{"items", "next_cursor"}``)
on taskyard's schema, **without authentication** (nothing here knows a user, so there is no
membership rule either): what differs is only the layer between FastAPI and PostgreSQL.

* `bench.apps.library.ceiling`: FastAPI and pydantic on a bare asyncpg pool, no session layer;
  the most a FastAPI app can do here.
* `bench.apps.library.tutorial`: the tutorial pattern (`bench.apps.tutorial`'s engine, models
  and ``get_db``), routes without its key and membership checks.
* `bench.apps.library.on_fastapi_sqla`: fastapi-sqla 4.0.1 as its README teaches.
* `bench.apps.library.on_advanced_alchemy`: advanced-alchemy 1.12 as its FastAPI docs teach.
* `bench.apps.library.on_sessionwise`: sessionwise as its README teaches.

The two peers are not in the project's lock: they run on the interpreter of
``bench/.peers-venv`` (`bench.peers`). So nothing here imports sessionwise or taskyard except
`on_sessionwise`, and `schemas` needs pydantic only.
"""
