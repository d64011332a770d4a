"""``taskyard serve --log-format json``: one JSON object per line, uvicorn's lines included,
each line of a request naming its request id."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.support.served_app import serve_taskyard


def test_serve_logs_one_json_object_per_line(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'logs.db'}"
    with serve_taskyard(url, tmp_path, extra_args=("--log-format", "json")) as app:
        headers = {**app.user.headers, "X-Request-ID": "json-log-1"}
        response = httpx.get(f"{app.base_url}/api/v1/tasks/424242?cursor=secret", headers=headers)
        assert response.status_code == 404
        assert response.json()["request_id"] == "json-log-1"
        app.terminate()
        log = app.log()

    # Everything the server process wrote after the CLI's migration line is JSON.
    lines = [line for line in log.splitlines() if line.strip()]
    served = lines[next(i for i, line in enumerate(lines) if line.startswith("{")) :]
    records = [json.loads(line) for line in served]
    assert {"time", "level", "logger", "message", "request_id"} <= set(records[0])
    loggers = {record["logger"] for record in records}
    assert "uvicorn.error" in loggers  # "Started server process", "Application startup"
    [access] = [r for r in records if r["logger"] == "uvicorn.access" and r.get("status") == 404]
    assert access["request_id"] == "json-log-1"
    assert access["method"] == "GET"
    assert access["path"] == "/api/v1/tasks/424242"
    assert "secret" not in json.dumps(records)  # the query string is never logged
    assert app.user.api_key not in log
