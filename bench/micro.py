"""Run the session-lifecycle micro-benchmark (pytest-benchmark) and keep its medians."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

TEST_FILE = Path(__file__).parent / "test_session_lifecycle.py"


def run_micro(workdir: Path) -> dict[str, Any]:
    """Median microseconds per unit of work, per variant and database."""
    output = workdir / "micro.json"
    command = [
        sys.executable,
        "-m",
        "pytest",
        str(TEST_FILE),
        "-m",
        "benchmark",
        "-q",
        f"--benchmark-json={output}",
        "--benchmark-min-rounds=200",
    ]
    completed = subprocess.run(
        command, capture_output=True, text=True, check=False, cwd=TEST_FILE.parent.parent
    )
    if completed.returncode != 0:
        raise RuntimeError(f"micro-benchmark failed:\n{completed.stdout}\n{completed.stderr}")
    report = json.loads(output.read_text())
    rows = []
    for entry in report["benchmarks"]:
        stats = entry["stats"]
        rows.append(
            {
                "name": entry["name"].removeprefix("test_"),
                "median_us": round(stats["median"] * 1e6, 1),
                "iqr_us": round(stats["iqr"] * 1e6, 1),
                "rounds": stats["rounds"],
            }
        )
    shown = "uv run pytest bench/test_session_lifecycle.py -m benchmark --benchmark-min-rounds=200"
    return {"command": shown, "rows": rows}
