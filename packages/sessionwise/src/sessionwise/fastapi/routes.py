"""The template of the route a request matched, as clients call it: ``/api/v1/tasks/{task_id}``.

For metrics and log records, which must name the route and never the path (it carries ids
and whatever a client sent). FastAPI leaves the matched route in ``scope["route"]``; since
FastAPI 0.137 a route of an included router is the router's own object, whose ``path`` lacks
the include's prefix (``/tasks/{task_id}``). The app's full templates are read once per app
from its routes (FastAPI's ``effective_route_contexts()`` of each included router, the same
source its OpenAPI document uses) and looked up by route. A route of a mounted sub-app gets
the mount's prefix (``/board/tasks/{task_id}``): Starlette's ``Mount`` extends the scope's
``root_path`` past the outermost app's (``app_root_path``).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import Any

from starlette.types import Scope

__all__ = ["route_template"]

# app -> id(route object) -> its full template
_templates: weakref.WeakKeyDictionary[Any, dict[int, str]] = weakref.WeakKeyDictionary()


def _collect(routes: Iterable[Any], into: dict[int, str]) -> None:
    for route in routes:
        contexts = getattr(route, "effective_route_contexts", None)
        if callable(contexts):
            for context in contexts():
                template = getattr(context, "path_format", None)
                if isinstance(template, str) and template:
                    into.setdefault(id(context.original_route), template)
            continue
        template = getattr(route, "path_format", None) or getattr(route, "path", None)
        if isinstance(template, str):
            into.setdefault(id(route), template)


def route_template(scope: Scope) -> str | None:
    """The matched route's full template, or None if the request matched no route."""
    route = scope.get("route")
    if route is None:
        return None
    app = scope.get("app")
    router = getattr(app, "router", None)
    if router is None:
        return getattr(route, "path", None)
    known = _templates.get(app)
    if known is None or id(route) not in known:
        known = {}  # first request, or routes added since: read them (again)
        _collect(router.routes, known)
        _templates[app] = known
    template = known.get(id(route)) or getattr(route, "path", None)
    if template is None:
        return None
    outermost = scope.get("app_root_path")
    root_path: str = scope.get("root_path", "")
    if outermost is not None and root_path.startswith(outermost):
        template = root_path[len(outermost) :] + template  # the mounts' prefixes
    return template
