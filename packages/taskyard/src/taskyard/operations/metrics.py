"""The app's Prometheus metrics and ``GET /metrics`` (Prometheus text format, on the API port).

One registry per app (`AppMetrics`), so that several apps in one process (tests) do not
share counts: sessionwise's pool and session metrics (`sessionwise.metrics.prometheus`), the
queue's (`taskyard.tasks.events`) and the requests' (`taskyard.operations.request_metrics`).
No label carries a user's data: routes are templates, methods a fixed set, statuses classes;
the queue metrics have no labels at all (no project, no worker).

``/metrics`` answers loopback clients without authentication, and others only with
``Authorization: Bearer <TASKYARD_METRICS_TOKEN>`` (compared in constant time); anyone else
gets 403. It is left out of the OpenAPI document: it is the operator's, not the API's. Under
``taskyard serve --workers N`` each worker process keeps its own counts, and a scrape reaches
whichever worker accepts it (docs/operations.md).
"""

from __future__ import annotations

import hmac
import ipaddress

from fastapi import APIRouter, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

from sessionwise.metrics.prometheus import PrometheusMetrics
from taskyard.errors import ProblemError, ProblemKind

__all__ = ["AppMetrics", "QueueMetrics", "router"]

# Seconds a task waited to be claimed: from milliseconds on a busy queue to hours on an idle one.
CLAIM_LATENCY_BUCKETS = (
    0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0,
)  # fmt: skip


class QueueMetrics:
    """The queue's counters, fed by the task service once its transaction committed."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.created = Counter("taskyard_tasks_created", "Tasks created.", registry=registry)
        self.claimed = Counter(
            "taskyard_tasks_claimed", "Tasks claimed by a worker.", registry=registry
        )
        self.completed = Counter(
            "taskyard_tasks_completed", "Tasks a worker completed.", registry=registry
        )
        self.failed = Counter(
            "taskyard_task_attempts_failed",
            "Attempts a worker reported as failed (the task is retried, or dead after its last).",
            registry=registry,
        )
        self.dead = Counter(
            "taskyard_tasks_dead", "Tasks whose last attempt failed.", registry=registry
        )
        self.expired = Counter(
            "taskyard_task_leases_expired",
            "Leases that ran out and were taken back (their workers vanished).",
            registry=registry,
        )
        self.claim_latency = Histogram(
            "taskyard_task_claim_latency_seconds",
            "How long a task was due (run_after) before a worker claimed it.",
            buckets=CLAIM_LATENCY_BUCKETS,
            registry=registry,
        )

    def task_created(self) -> None:
        self.created.inc()

    def task_claimed(self, waited: float) -> None:
        self.claimed.inc()
        self.claim_latency.observe(max(waited, 0.0))

    def leases_expired(self, count: int) -> None:
        self.expired.inc(count)

    def tasks_completed(self, count: int) -> None:
        self.completed.inc(count)

    def task_failed(self, *, dead: bool) -> None:
        self.failed.inc()
        if dead:
            self.dead.inc()


class AppMetrics:
    """Everything ``/metrics`` shows for one app."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.database = PrometheusMetrics(self.registry)
        self.queue = QueueMetrics(self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)


router = APIRouter()


def _is_loopback(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:  # not an address (a unix socket's peer, a test client's name)
        return False


def _authorized(request: Request) -> bool:
    if _is_loopback(request.client.host if request.client else None):
        return True
    token = request.app.state.settings.metrics_token
    if token is None:
        return False
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    expected = token.get_secret_value().encode()
    # compare_digest on bytes: constant time in the length of the expected token.
    return scheme.lower() == "bearer" and hmac.compare_digest(
        credentials.strip().encode(), expected
    )


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    if not _authorized(request):
        raise ProblemError(
            ProblemKind.FORBIDDEN,
            "/metrics answers loopback clients, and others with "
            "`Authorization: Bearer <TASKYARD_METRICS_TOKEN>`",
        )
    app_metrics: AppMetrics = request.app.state.metrics
    return Response(app_metrics.render(), media_type=CONTENT_TYPE_LATEST)
