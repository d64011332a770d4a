"""What framework adapters do to an app when a `Database` starts in its lifespan.

The core knows no web framework, yet ``FastAPI(lifespan=db.lifespan)`` alone should give an
app everything the adapter offers (its database error handlers, say). So an adapter registers
a hook when it is imported (`sessionwise.fastapi` does), and `Database.lifespan` runs every
hook with the app and the started `Database`. A hook decides itself whether the app is one of
its framework's and does nothing otherwise; it must be idempotent, since one app may enter
several lifespans, or be set up by hand as well.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sessionwise.database import Database

__all__ = ["AppHook", "register_app_hook", "run_app_hooks"]

AppHook = Callable[[Any, "Database[Any]"], None]
"""``hook(app, database)``: set up *app*, whose lifespan just started *database*."""

_hooks: list[AppHook] = []


def register_app_hook(hook: AppHook) -> None:
    """Run *hook* in every `Database.lifespan` from now on; registering twice is a no-op."""
    if hook not in _hooks:
        _hooks.append(hook)


def run_app_hooks(app: Any, database: Database[Any]) -> None:
    """Run the registered hooks, in registration order, on *app* and its *database*."""
    for hook in tuple(_hooks):
        hook(app, database)
