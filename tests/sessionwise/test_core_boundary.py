"""The boundary: the core knows SQLAlchemy only; each framework lives in its own adapter.

Each check runs in a fresh interpreter, so that what this test process already imported
(pytest, httpx, FastAPI through other tests) cannot hide an import.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

ADAPTERS = {"sessionwise.fastapi", "sessionwise.testing"}

PROBE = textwrap.dedent(
    """
    import importlib, json, pkgutil, sys

    import sessionwise

    core = sorted(
        f"sessionwise.{info.name}"
        for info in pkgutil.iter_modules(sessionwise.__path__)
        if f"sessionwise.{info.name}" not in set(sys.argv[1].split(","))
    )
    for name in [*core, *filter(None, sys.argv[2].split(","))]:
        importlib.import_module(name)
    roots = sorted({name.partition(".")[0] for name in sys.modules})
    print(json.dumps({"core": core, "roots": roots, "modules": sorted(sys.modules)}))
    """
)


def imported_after(*modules: str) -> dict[str, list[str]]:
    """Import every core module (and *modules*) in a fresh interpreter; report what loaded."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE, ",".join(sorted(ADAPTERS)), ",".join(modules)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report: dict[str, list[str]] = json.loads(result.stdout)
    return report


def test_core_imports_no_framework_no_service_no_test_tool() -> None:
    report = imported_after()

    assert "sessionwise.database" in report["core"]  # the probe really walked the core
    assert "sessionwise.guards" in report["core"]
    assert "sessionwise.metrics" in report["core"]
    # The metrics exporters' libraries too: the core measures without them (issue 13).
    frameworks = {"fastapi", "starlette", "taskyard", "pytest", "_pytest", "httpx"}
    frameworks |= {"prometheus_client", "opentelemetry"}
    assert frameworks.isdisjoint(report["roots"]), frameworks & set(report["roots"])
    assert ADAPTERS.isdisjoint(report["modules"])


@pytest.mark.parametrize(
    ("adapter", "allowed", "forbidden"),
    [
        ("sessionwise.fastapi", {"fastapi"}, {"taskyard", "pytest", "_pytest", "httpx"}),
        ("sessionwise.testing", {"pytest", "httpx"}, {"taskyard", "fastapi"}),
    ],
)
def test_each_adapter_brings_only_its_own_framework(
    adapter: str, allowed: set[str], forbidden: set[str]
) -> None:
    roots = set(imported_after(adapter)["roots"])

    assert allowed <= roots
    assert forbidden.isdisjoint(roots), forbidden & roots
