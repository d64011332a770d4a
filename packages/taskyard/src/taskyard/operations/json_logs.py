"""Log configuration for ``taskyard serve``: text, or one JSON object per line (``--log-format``).

Both formats run every record (the app's, sessionwise's, uvicorn's own and its access log)
through `RequestIdFilter`, so each line of a request names its ``request_id``. A JSON line
holds ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``, ``request_id``, the
record's extra fields (the slow-session warning's ``session_label``, ``hold_seconds``,
``statements``) and ``exception`` when there is one. Access lines carry ``method``, ``path``
and ``status``; the query string is left out (it holds cursors and filters), and so is the
client's address.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any, Literal

__all__ = ["JsonFormatter", "LogFormat", "log_config"]

LogFormat = Literal["text", "json"]

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "request_id",
    "color_message",  # uvicorn's colored copy of the message
}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        if (
            record.name == "uvicorn.access"
            and isinstance(record.args, tuple)
            and len(record.args) == 5
        ):
            _client, method, full_path, _version, status = record.args
            path = str(full_path).partition("?")[0]
            entry.update(
                method=method, path=path, status=status, message=f"{method} {path} {status}"
            )
        for name, value in vars(record).items():
            if name not in _STANDARD:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def log_config(log_format: LogFormat, level: str = "info") -> dict[str, Any]:
    """A `logging.config.dictConfig` for uvicorn's ``log_config`` (applied in every worker)."""
    formatter: dict[str, Any] = (
        {"()": "taskyard.operations.json_logs.JsonFormatter"}
        if log_format == "json"
        else {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"}
    )
    handler = {
        "class": "logging.StreamHandler",
        "formatter": "default",
        "filters": ["request_id"],
        "stream": "ext://sys.stderr",
    }

    def own() -> dict[str, Any]:
        return {"handlers": ["default"], "level": level.upper(), "propagate": False}

    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": "taskyard.operations.request_ids.RequestIdFilter"}},
        "formatters": {"default": formatter},
        "handlers": {"default": handler},
        "loggers": {
            "uvicorn": own(),
            "uvicorn.error": {"level": level.upper()},
            "uvicorn.access": own(),
            # SQLAlchemy's own default, kept explicit: at INFO it logs every statement with
            # its parameters, which are users' data.
            "sqlalchemy": {"level": "WARNING"},
        },
        "root": {"handlers": ["default"], "level": level.upper()},
    }
