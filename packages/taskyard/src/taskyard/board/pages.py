"""Rendering: the Jinja2 environment (autoescaped), pages and htmx fragments.

Every value a template shows is escaped by Jinja2's autoescape, in text and in attributes
alike; no template marks user text safe. A page request gets the whole page; an htmx request
(``HX-Request: true``) may get only the fragment it swaps.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import Request
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, PackageLoader, StrictUndefined
from starlette.responses import Response

from taskyard.board.moves import MOVES, RETRY_FROM
from taskyard.board.visitors import Visitor
from taskyard.tasks.models import TaskStatus

__all__ = ["is_htmx", "render", "status_label"]

_environment = Environment(
    loader=PackageLoader("taskyard.board", "templates"),
    autoescape=True,
    undefined=StrictUndefined,  # a misspelt name is an error in tests, not an empty string
    trim_blocks=True,
    lstrip_blocks=True,
)
_templates = Jinja2Templates(env=_environment)


def status_label(status: TaskStatus) -> str:
    return status.value.replace("_", " ").capitalize()


_environment.globals["status_label"] = status_label
_environment.globals["statuses"] = list(TaskStatus)
_environment.globals["moves"] = MOVES
_environment.globals["retry_from"] = RETRY_FROM


def is_htmx(request: Request) -> bool:
    return request.headers.get("HX-Request") == "true"


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any],
    *,
    visitor: Visitor | None = None,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
) -> Response:
    # root_path is the board's mount point (plus any proxy prefix): every link starts there.
    full = {"base": request.scope.get("root_path", ""), "visitor": visitor, **context}
    return _templates.TemplateResponse(
        request, template, full, status_code=status_code, headers=dict(headers or {})
    )


def render_text(request: Request, template: str, context: Mapping[str, Any]) -> str:
    """A fragment as text (the board fingerprints what it would send)."""
    full = {"base": request.scope.get("root_path", ""), **context}
    return _environment.get_template(template).render(full)
