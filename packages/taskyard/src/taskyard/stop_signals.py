"""Run a callback as soon as the process is asked to stop, before the server's own handler.

Uvicorn's graceful shutdown waits for the requests in flight and only then runs the
lifespan's exit; a claim waiting up to 30 s for work would hold the shutdown that long (and
be cancelled without an answer after ``--graceful-timeout``). Chained in front of the
handler the server installed for SIGTERM and SIGINT, the callback (`WakeupHub.drain`) makes
those claims answer at once, and the server then stops as fast as without them.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType

__all__ = ["on_stop_signals"]

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextlib.contextmanager
def on_stop_signals(callback: Callable[[], None]) -> Iterator[None]:
    """Call *callback* on the running loop at SIGTERM / SIGINT, then the previous handler.

    Only where a server installed a Python handler (uvicorn does, around the lifespan):
    without one, the default action ends the process anyway. Restored on exit.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers belong to the main thread
        return
    loop = asyncio.get_running_loop()
    chained: dict[int, Callable[[int, FrameType | None], object]] = {}

    def handle(signum: int, frame: FrameType | None) -> None:
        loop.call_soon_threadsafe(callback)
        chained[signum](signum, frame)

    for signum in _STOP_SIGNALS:
        previous = signal.getsignal(signum)
        if callable(previous):
            chained[signum] = previous
            signal.signal(signum, handle)
    try:
        yield
    finally:
        for number, previous in chained.items():
            if signal.getsignal(number) is handle:
                signal.signal(number, previous)
