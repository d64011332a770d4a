"""Pool and session metrics, fed by SQLAlchemy's pool events and sessionwise's session lifecycle.

Give a `Database` a recorder (``Database(url, metrics=PrometheusMetrics())``) and every pool
it opens is measured by name (``primary``, ``read``; ``<name>.primary`` for a named
Database), as OpenTelemetry's database-client conventions define it: connections by state
(idle, used), the maximum, pending requests, timeouts, create, wait and use time; and every
session by hold time and outcome (committed, closed, rolled back, failed by cause). The core
measures without any exporter installed; the exporters import their library only when used:

* `sessionwise.metrics.prometheus.PrometheusMetrics` (extra ``sessionwise[prometheus]``);
* `sessionwise.metrics.otel.OpenTelemetryMetrics` (extra ``sessionwise[otel]``), and
  `sessionwise.metrics.otel.OpenTelemetrySpans` for the checkout-wait and commit spans.

Any other pool (a replica's) is measured with `instrument_pool`. ``docs/operations.md`` lists
every metric and the alert to set on it.
"""

from sessionwise.metrics.pools import PoolMeter, instrument_pool
from sessionwise.metrics.recorder import FanOut, MetricsRecorder, PoolReading, SessionOutcome
from sessionwise.metrics.sessions import SESSION_LABEL_KEY, SessionMeter, outcome_of

__all__ = [
    "SESSION_LABEL_KEY",
    "FanOut",
    "MetricsRecorder",
    "PoolMeter",
    "PoolReading",
    "SessionMeter",
    "SessionOutcome",
    "instrument_pool",
    "outcome_of",
]
