"""The throughput plot: requests per second against connections, per app, one panel per call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; no display on a server
import matplotlib.pyplot as plt

from bench.apps_under_test import LIBRARY_APPS
from bench.measure import CALL_TITLES, CALLS
from bench.targets import RATIO_CONNECTIONS

APPS = ("raw", "tutorial", "ceiling", "taskyard")
STYLES = {"raw": "s--", "tutorial": "o:", "ceiling": "^-.", "taskyard": "D-"}


def write_plot(payload: dict[str, Any], path: Path) -> None:
    rows = [row for row in payload["summaries"] if row["section"] == "postgres"]
    figure, axes = plt.subplots(1, len(CALLS), figsize=(4 * len(CALLS), 3.6), sharey=False)
    for axis, call in zip(axes, CALLS, strict=True):
        for app in APPS:
            points = sorted(
                (row["connections"], row["requests_per_second"])
                for row in rows
                if row["app"] == app and row["call"] == call
            )
            if points:
                x, y = zip(*points, strict=True)
                axis.plot(x, y, STYLES[app], label=app)
        axis.set_title(CALL_TITLES[call])
        axis.set_xscale("log", base=2)
        connections = sorted({row["connections"] for row in rows})
        axis.set_xticks(connections, [str(c) for c in connections])
        axis.set_xlabel("connections")
        axis.set_yscale("log")  # raw is an order of magnitude above the others
        axis.grid(True, alpha=0.3)
    axes[0].set_ylabel("requests / s (median, log scale)")
    axes[-1].legend(loc="best")
    figure.suptitle("PostgreSQL, one uvicorn worker per app")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write_library_plot(payload: dict[str, Any], path: Path) -> bool:
    """Bars: each library app's req/s over the ceiling's, per call; False if not run."""
    rows = {
        (row["app"], row["call"]): row["requests_per_second"]
        for row in payload["summaries"]
        if row["section"] == "library" and row["connections"] == RATIO_CONNECTIONS
    }
    if not rows:
        return False
    apps = [app for app in LIBRARY_APPS[1:] if any(key[0] == app for key in rows)]
    figure, axis = plt.subplots(figsize=(9, 3.8))
    width = 0.8 / len(apps)
    for index, app in enumerate(apps):
        ratios = [
            rows.get((app, call), 0.0) / rows[("ceiling", call)]
            if rows.get(("ceiling", call))
            else 0.0
            for call in CALLS
        ]
        positions = [call_index + (index - (len(apps) - 1) / 2) * width for call_index in range(4)]
        axis.bar(positions, ratios, width, label=app)
    axis.axhline(1.0, color="black", linewidth=0.8)
    axis.set_xticks(range(len(CALLS)), [CALL_TITLES[call] for call in CALLS])
    axis.set_ylabel("req/s / ceiling's (median)")
    axis.set_ylim(0, 1.05)
    axis.grid(True, axis="y", alpha=0.3)
    axis.legend(loc="upper right", fontsize="small")
    figure.suptitle(
        f"Library section: one contract, no auth, {RATIO_CONNECTIONS} connections, "
        "one uvicorn worker each"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True
