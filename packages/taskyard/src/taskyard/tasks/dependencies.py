"""The queue's request dependencies: where the task service reports what happened."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from taskyard.tasks.events import QueueEvents

__all__ = ["QueueEventsDep"]


async def _queue_events(request: Request) -> QueueEvents | None:
    # The app's queue metrics (taskyard.operations.metrics), when it has them; the board
    # shares the API's state, so its creates are counted alike.
    events: QueueEvents | None = getattr(request.app.state, "queue_events", None)
    return events


QueueEventsDep = Annotated[QueueEvents | None, Depends(_queue_events)]
