"""Request duration by route template, method and status class (pure ASGI middleware).

``http_server_request_duration_seconds{method, route, status_class}``, after OpenTelemetry's
``http.server.request.duration``. The route is the template the request matched
(``/api/v1/tasks/{task_id}``) of the route FastAPI's router left in the ASGI scope
(`sessionwise.fastapi.routes`); a request that matched none is ``unmatched``. Methods outside
the standard set are ``other``, so that neither label can carry what a client made up.
"""

from __future__ import annotations

from time import perf_counter

from prometheus_client import CollectorRegistry, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sessionwise.fastapi.routes import route_template

__all__ = ["UNMATCHED", "RequestMetricsMiddleware", "request_duration"]

UNMATCHED = "unmatched"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"})
# Seconds; the API answers in milliseconds, a database wait ends at 5-10 s.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def request_duration(registry: CollectorRegistry) -> Histogram:
    return Histogram(
        "http_server_request_duration_seconds",
        "Time from the request's arrival to the end of its response.",
        ["method", "route", "status_class"],
        buckets=BUCKETS,
        registry=registry,
    )


class RequestMetricsMiddleware:
    def __init__(self, app: ASGIApp, duration: Histogram) -> None:
        self.app = app
        self._duration = duration
        # (method, route, status class) -> its histogram: labels() takes a lock each call.
        self._children: dict[tuple[str, str, str], Histogram] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = perf_counter()
        status = 500  # unless a response starts: an exception becomes Starlette's 500

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            route = route_template(scope) or UNMATCHED
            method = scope["method"] if scope["method"] in _METHODS else "other"
            key = (method, route, f"{status // 100}xx")
            child = self._children.get(key)
            if child is None:
                child = self._children[key] = self._duration.labels(*key)
            child.observe(perf_counter() - started)
