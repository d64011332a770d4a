"""Debian's chromium, for Playwright: browser downloads are impossible on these machines.

`chromium_path` finds the binary or fails with what to do; nothing is ever skipped for want of
a browser (``make system-deps`` installs it, CI runs that first).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

__all__ = ["CHROMIUM_ARGS", "MissingChromiumError", "chromium_path"]

# The Debian package's binary; TASKYARD_TEST_CHROMIUM points elsewhere if need be.
_CANDIDATES = ("/usr/bin/chromium", "/usr/lib/chromium/chromium")
CHROMIUM_ARGS = ["--disable-gpu", "--disable-dev-shm-usage"]


class MissingChromiumError(RuntimeError):
    pass


def chromium_path() -> str:
    configured = os.environ.get("TASKYARD_TEST_CHROMIUM")
    candidates = [configured] if configured else [shutil.which("chromium"), *_CANDIDATES]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise MissingChromiumError(
        "the board's browser tests need Debian's chromium, and none was found "
        f"({', '.join(c for c in candidates if c)}): run `make system-deps` "
        "(apt-get install chromium), or set TASKYARD_TEST_CHROMIUM to a chromium binary"
    )
