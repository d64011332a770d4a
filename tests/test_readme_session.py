"""The README's first session with taskyard works as written.

The ``bash`` block under "A first session" is run line by line against a served taskyard
(the same SQLite file the CLI writes to), and every ``# ...`` line right after a command is
checked against what the command printed: in order, ``...`` standing for any text.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.served_app import serve_taskyard, taskyard_command

README = Path(__file__).resolve().parents[1] / "README.md"
SEPARATOR = "@@command-done@@"


@dataclass
class Step:
    command: str
    expected: list[str] = field(default_factory=list)


def first_session_steps() -> list[Step]:
    text = README.read_text()
    section = text.split("### A first session", 1)[1]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    steps: list[Step] = []
    pending = ""
    after_command = False
    for line in block.splitlines():
        if not line.strip():
            after_command = False
        elif line.startswith("#"):
            if after_command:  # output lines follow their command directly
                steps[-1].expected.append(line[1:].strip())
        elif line.endswith("\\"):
            pending += line[:-1] + " "
        else:
            steps.append(Step(pending + line))
            pending = ""
            after_command = True
    return steps


def _pattern(expected: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in expected.split("...")))


def test_readme_first_session_runs_as_written(tmp_path: Path) -> None:
    steps = first_session_steps()
    assert len(steps) >= 8, "the README's first session lost its commands"
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'taskyard.db'}"
    env = {"TASKYARD_DATABASE_URL": database_url}
    with serve_taskyard(database_url, tmp_path, env=env, users=[]) as app:
        port = app.base_url.rsplit(":", 1)[1]
        taskyard = " ".join(taskyard_command())
        script = ["set -euo pipefail"]
        for step in steps:
            command = step.command.replace("localhost:8000", f"127.0.0.1:{port}")
            command = command.replace("uv run taskyard", taskyard)
            script += [command, f"echo; echo {SEPARATOR}"]
        result = subprocess.run(
            ["bash", "-c", "\n".join(script)],
            capture_output=True,
            text=True,
            timeout=120,
            env={**app.env, "PATH": "/usr/bin:/bin", "TASKYARD_DATABASE_URL": database_url},
            check=False,
        )
    assert result.returncode == 0, result.stderr
    outputs = result.stdout.split(SEPARATOR)
    for step, output in zip(steps, outputs, strict=False):
        lines = [line.strip() for line in output.strip().splitlines()]
        position = 0
        for expected in step.expected:
            pattern = _pattern(expected)
            while position < len(lines) and not pattern.fullmatch(lines[position]):
                position += 1
            assert position < len(lines), (
                f"`{step.command}` printed no line matching {expected!r}:\n{output}"
            )
            position += 1
