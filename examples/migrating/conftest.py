"""The app's module-level `db` needs a URL to be built at import; the tests use their own."""

from __future__ import annotations

import os

# There is no default database (sessionwise raises ConfigurationError without a URL). The
# plugin's tests never start this one: api_client points the app at sessionwise_database.
os.environ.setdefault("TASKS_DB_URL", "sqlite+aiosqlite:///:memory:")
