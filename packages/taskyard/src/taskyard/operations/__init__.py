"""What an operator sees of taskyard: metrics, traces, request ids and logs (issue 13).

Each HTTP concern is one small piece that `taskyard.app.create_app` installs with one line:

* `request_ids`: ``X-Request-ID`` taken (validated) or made, echoed, and put on every log
  record and problem body of the request;
* `request_metrics`: request duration by route template, method and status class;
* `metrics`: the app's Prometheus registry (sessionwise's pool and session metrics, the
  queue's, the requests') and ``GET /metrics``, for loopback clients or a bearer token;
* `tracing`: OpenTelemetry spans per request, with the session's connection wait, its
  statements and its commit, exported by OTLP when configured;
* `json_logs`: ``taskyard serve --log-format json``, one JSON object per line.
"""
