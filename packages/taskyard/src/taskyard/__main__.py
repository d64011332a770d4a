"""``python -m taskyard``: the command line."""

from taskyard.cli import app

app(prog_name="taskyard")
