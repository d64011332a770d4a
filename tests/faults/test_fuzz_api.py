"""schemathesis over the served taskyard: every phase, every check, zero failures (issue 16).

``schemathesis run`` (the CLI a user would run) loads the document from the served app's
``/openapi.json`` and runs all four phases: examples, coverage (boundaries, missing headers,
undeclared methods), fuzzing (valid and invalid data) and stateful (chains of calls that
follow the document's OpenAPI links: project, then its workers and tasks, then claims and
heartbeats). Every check is on: no 5xx, statuses, content types, headers and bodies as
documented, invalid input refused, valid input accepted, 405 with ``Allow``, 401 without a
key, deleted resources gone. Which check is tuned for this API, and why, is said in one
place: ``/schemathesis.toml`` (its hooks: tests/support/schemathesis_hooks.py). Its bounds
(examples per operation, steps per scenario) keep the run to about a minute; the seed is
fixed, so CI runs the same cases every time.

The app is served by uvicorn on its own PostgreSQL database (NUL bytes, huge integers and odd
Unicode hit PostgreSQL harder than SQLite), called with a valid API key.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.served_app import ServedApp

pytestmark = pytest.mark.faults

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "schemathesis.toml"
SEED = 2  # fixed: the same cases on every run, so CI results do not depend on luck
PHASES = ("Examples", "Coverage", "Fuzzing", "Stateful")


def _schemathesis() -> str:
    script = Path(sys.executable).parent / "schemathesis"
    assert script.exists(), "schemathesis is a dev dependency (uv sync)"
    return str(script)


@pytest.mark.timeout(600)
def test_schemathesis_all_phases_all_checks_no_failure(served: ServedApp, tmp_path: Path) -> None:
    document = httpx.get(f"{served.base_url}/openapi.json", timeout=10).json()
    operations = sum(len(item) for item in document["paths"].values())
    result = subprocess.run(
        [
            _schemathesis(),
            "--config-file",
            str(CONFIG),
            "--no-color",
            "run",
            f"{served.base_url}/openapi.json",
            "--header",
            f"Authorization: Bearer {served.user.api_key}",
            "--seed",
            str(SEED),
            "--phases",
            ",".join(phase.lower() for phase in PHASES),
        ],
        # Its example database and crash files go to a temporary directory, not the
        # checkout; the hooks module is imported from the repository root.
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-20_000:]
    summary = output.rsplit("SUMMARY", 1)[-1]
    print(summary.strip().splitlines()[-1])  # "... in 95.2s": the run's time, with -rP / -s
    for phase in PHASES:
        assert f"✅ {phase}" in summary, summary
    assert f"Selected: {operations}/{operations}" in summary, summary
    assert f"Tested: {operations}" in summary, summary
    assert "failure" not in summary.lower(), summary
    # Every operation a link leads to was called in some scenario (schemathesis warns about
    # "Reachable via links, but stateful testing never reached ...").
    assert "never reached" not in output, output.rsplit("WARNINGS", 1)[-1]
