"""Where a request's time goes, from py-spy's folded stacks: one phase per sample.

Each sample is a stack (outermost frame first). It is given to the phase of its innermost
frame that one of `RULES` names, so that a pool checkout inside a commit counts as the pool,
an event listener inside a flush as the event, and what is left of a statement (compiling,
executing, turning rows into objects) as the statement path. Samples no rule names fall to
the package of their innermost frame. The rules name the pieces issue 15 asks about: the
session's own cost (creation, events, guards, pool turns, close), SQLAlchemy's per-statement
path, and response building.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

# A frame as py-spy's raw format writes it: "function (path/to/file.py:line)".
FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^():]+)(?::(?P<line>\d+))?\)$")


@dataclass(frozen=True)
class Rule:
    phase: str
    file: str  # a fragment of the path, e.g. "sqlalchemy/pool/"
    functions: frozenset[str] = frozenset()  # empty: any function of that file

    def matches(self, function: str, file: str) -> bool:
        # py-spy writes qualified names (AsyncSession.commit): the rule names the method.
        name = function.rsplit(".", 1)[-1]
        return self.file in file and (not self.functions or name in self.functions)


def _rule(phase: str, file: str, *functions: str) -> Rule:
    return Rule(phase, file, frozenset(functions))


SESSION_PATH = "sqlalchemy/ext/asyncio/session.py"
ORM_SESSION = "sqlalchemy/orm/session.py"
RULES: tuple[Rule, ...] = (
    # The session's own lifecycle.
    _rule("session: creation", SESSION_PATH, "__init__"),
    _rule("session: creation", ORM_SESSION, "__init__"),
    _rule("session: creation", "sqlalchemy/ext/asyncio/session.py", "__call__"),
    _rule("session: commit", SESSION_PATH, "commit"),
    _rule("session: commit", ORM_SESSION, "commit", "_prepare_impl"),
    _rule("session: rollback", SESSION_PATH, "rollback"),
    _rule("session: close", SESSION_PATH, "close", "__aexit__"),
    _rule("session: close", ORM_SESSION, "close", "_close_impl", "_remove_snapshot"),
    _rule("session: begin / connection", ORM_SESSION, "_connection_for_bind", "connection"),
    _rule("sessionwise: pool turns", "sessionwise/pool_turns.py"),
    _rule("sessionwise: guards", "sessionwise/guards.py"),
    _rule("sessionwise: liveness (pre-ping)", "sessionwise/liveness.py"),
    _rule("sessionwise: other", "sessionwise/"),
    _rule("SQLAlchemy events (listener dispatch)", "sqlalchemy/event/"),
    _rule("pool: checkout / return", "sqlalchemy/pool/"),
    # One statement: building, compiling (or the cache), executing, rows -> objects.
    _rule(
        "statement: session.execute/get/scalars/refresh/flush (rest of the path)",
        SESSION_PATH,
        "execute",
        "scalars",
        "scalar",
        "get",
        "refresh",
        "flush",
        "exec",
    ),
    _rule("statement: ORM rows -> objects", "sqlalchemy/orm/loading.py"),
    _rule("statement: ORM flush (unit of work)", "sqlalchemy/orm/unitofwork.py"),
    _rule("statement: ORM flush (unit of work)", "sqlalchemy/orm/persistence.py"),
    _rule("statement: compile / cache key", "sqlalchemy/sql/compiler.py"),
    _rule("statement: compile / cache key", "sqlalchemy/sql/cache_key.py"),
    _rule("statement: ORM context (select setup)", "sqlalchemy/orm/context.py"),
    _rule("statement: engine execution / result", "sqlalchemy/engine/"),
    _rule("statement: asyncpg dialect adapter", "sqlalchemy/dialects/postgresql/asyncpg.py"),
    _rule("statement: greenlet bridge", "sqlalchemy/util/_concurrency_py3k.py"),
    _rule("asyncpg (protocol, IO)", "asyncpg/"),
    # The HTTP side.
    _rule("response: FastAPI serialize_response", "fastapi/routing.py", "serialize_response"),
    _rule("response: pydantic model_validate", "pydantic/main.py", "model_validate"),
    _rule("response: JSON response", "starlette/responses.py"),
    _rule("request: FastAPI dependencies", "fastapi/dependencies/"),
    _rule("request: FastAPI routing + endpoint body (app code)", "fastapi/"),
    _rule("request: starlette routing / middleware", "starlette/"),
    _rule("HTTP server (uvicorn, httptools)", "uvicorn/"),
)


# Leaves where the thread waits on the kernel or runs C code py-spy cannot see into: asyncpg's
# socket writes (its protocol is Cython: a send shows as the Python frame that called it) and
# uvloop's own loop. On a loaded machine a send that wakes PostgreSQL often loses the CPU
# right there, and py-spy counts a preempted thread as busy, so these shares are partly wall
# clock; `render` also shows every phase without them.
WAITING_LEAVES = frozenset(
    {
        ("__do_execute", "asyncpg/prepared_stmt.py"),
        ("execute", "asyncpg/connection.py"),
        ("_execute", "asyncpg/connection.py"),
        ("__execute", "asyncpg/connection.py"),
        ("run", "asyncio/runners.py"),
    }
)


@dataclass(frozen=True)
class Breakdown:
    samples: int
    phases: Counter[str]
    leaves: Counter[str]
    # (leaf, its caller, the caller's caller) -> samples: who calls the expensive leaves.
    chains: Counter[tuple[str, str, str]]
    waiting: int  # samples whose leaf is one of WAITING_LEAVES
    phases_busy: Counter[str]  # phases of the other samples


def _frames(stack: str) -> list[tuple[str, str]]:
    frames = []
    for raw in stack.split(";"):
        match = FRAME.match(raw.strip())
        if match is None:
            frames.append((raw.strip(), ""))
        else:
            frames.append((match["function"], match["file"]))
    return frames


def _package(file: str) -> str:
    for anchor in ("site-packages/", "/src/"):
        if anchor in file:
            return "other: " + file.split(anchor, 1)[1].split("/", 1)[0].removesuffix(".py")
    if "/bench/" in file:
        return "other: bench app code"
    return "other: stdlib / event loop" if file else "other: native"


def phase_of(frames: list[tuple[str, str]]) -> str:
    for function, file in reversed(frames):
        for rule in RULES:
            if rule.matches(function, file):
                return rule.phase
    return _package(frames[-1][1]) if frames else "other: native"


def _short(frame: tuple[str, str]) -> str:
    function, file = frame
    return f"{function} ({'/'.join(Path(file).parts[-2:])})"


def _is_waiting(frame: tuple[str, str]) -> bool:
    function, file = frame
    name = function.rsplit(".", 1)[-1]  # py-spy writes the qualified name: Class.method
    return any(name == leaf and file.endswith(path) for leaf, path in WAITING_LEAVES)


def breakdown(lines: Iterable[str]) -> Breakdown:
    phases: Counter[str] = Counter()
    phases_busy: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    chains: Counter[tuple[str, str, str]] = Counter()
    total = waiting = 0
    for line in lines:
        stack, _, count_text = line.rstrip("\n").rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = _frames(stack)
        # py-spy's first frame is the thread ("process 123:..."): not a Python frame.
        frames = [frame for frame in frames if frame[1]]
        if not frames:
            continue
        total += count
        phase = phase_of(frames)
        phases[phase] += count
        if _is_waiting(frames[-1]):
            waiting += count
        else:
            phases_busy[phase] += count
        leaf = _short(frames[-1])
        leaves[leaf] += count
        caller = _short(frames[-2]) if len(frames) > 1 else ""
        above = _short(frames[-3]) if len(frames) > 2 else ""
        chains[(leaf, caller, above)] += count
    return Breakdown(total, phases, leaves, chains, waiting, phases_busy)


def group_of(phase: str) -> str:
    """The coarse groups of the report's summary table."""
    if phase.startswith("session: "):
        return "session lifecycle (SQLAlchemy: create, begin, commit, rollback, close)"
    if phase.startswith("sessionwise: "):
        return "sessionwise's own code (guards, pool turns, liveness, dependencies)"
    if phase.startswith(("statement: ", "asyncpg")):
        return "per-statement path (SQLAlchemy + asyncpg)"
    if phase.startswith("response: "):
        return "response building (pydantic, JSON)"
    if phase.startswith("request: ") or phase.startswith("HTTP server"):
        return "HTTP, routing, dependencies, endpoint body"
    if phase.startswith(("pool: ", "SQLAlchemy events")):
        return "pool checkout/return and SQLAlchemy events"
    return "other (event loop, stdlib, native)"


def grouped(result: Breakdown) -> Counter[str]:
    groups: Counter[str] = Counter()
    for phase, count in result.phases_busy.items():
        groups[group_of(phase)] += count
    return groups


def render(title: str, result: Breakdown, top: int = 25) -> str:
    total = max(1, result.samples)
    busy = max(1, result.samples - result.waiting)
    lines = [f"# {title}", "", f"{result.samples} samples (py-spy, non-blocking)", ""]
    lines.append("## summary, without socket waits")
    for group, count in grouped(result).most_common():
        lines.append(f"{100 * count / busy:5.1f} %  {group}")
    lines.append("")
    lines.append("## by phase (innermost named frame), all samples | without socket waits")
    for phase, count in result.phases.most_common():
        without = result.phases_busy.get(phase, 0)
        lines.append(f"{100 * count / total:5.1f} % | {100 * without / busy:5.1f} %  {phase}")
    lines.append(
        f"({100 * result.waiting / total:.1f} % of the samples end in asyncpg's socket calls or "
        "the event loop's C code: see WAITING_LEAVES)"
    )
    lines += ["", f"## top {top} leaf functions (own time)"]
    for leaf, count in result.leaves.most_common(top):
        lines.append(f"{100 * count / total:5.1f} %  {leaf}")
    lines += ["", f"## top {top} leaves with their callers (leaf <- caller <- its caller)"]
    for (leaf, caller, above), count in result.chains.most_common(top):
        lines.append(f"{100 * count / total:5.1f} %  {leaf} <- {caller} <- {above}")
    return "\n".join(lines) + "\n"
