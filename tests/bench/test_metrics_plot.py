"""bench.metrics_plot reads a real ``/metrics`` text the way the plot needs it."""

from __future__ import annotations

from bench.metrics_plot import _quantile, _sample
from sessionwise.metrics import PoolReading
from taskyard.operations.metrics import AppMetrics


def test_a_scrape_gives_pool_state_requests_and_wait_quantiles() -> None:
    metrics = AppMetrics()
    metrics.database.watch_pool(
        "primary", lambda: PoolReading(idle=2, used=8, max=10, pending_requests=5)
    )
    before = _sample(metrics.render().decode())
    for seconds in (0.0004, 0.0004, 0.0004, 0.3):
        metrics.database.connection_waited("primary", seconds)
    metrics.queue.task_created()
    after = _sample(metrics.render().decode())

    assert (after["idle"], after["used"], after["max"], after["pending"]) == (2, 8, 10, 5)
    assert after["timeouts"] == 0
    assert after["created"] == 1
    assert _quantile(before["wait_buckets"], after["wait_buckets"], 0.5) == 0.0005
    assert _quantile(before["wait_buckets"], after["wait_buckets"], 0.99) == 0.5
    assert _quantile(after["wait_buckets"], after["wait_buckets"], 0.5) is None  # nothing new
