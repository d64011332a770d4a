"""Interleaved measurement: every app runs each call in turn, round after round.

Round r runs, for each call and each connection count, every app once, starting the rotation
at app r (A B C, then B C A, ...), so that drift of the machine (other load, PostgreSQL's
autovacuum and checkpoints, a growing table) hits every app alike and no app is always first.
The figures reported are the medians over rounds.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from bench.wrk import Measurement, Target, run_wrk

CALLS = ("get", "list", "create", "patch")
KEYED_CALLS = ("create", "create_keyed")
"""taskyard only: the cost of an Idempotency-Key (issue 10), against the same create."""
CALL_TITLES = {
    "get": "get one",
    "list": "list 20",
    "create": "create",
    "create_keyed": "create with Idempotency-Key",
    "patch": "patch status",
    "claim": "claim",
    "mixed": "mixed",
}


@dataclass(frozen=True)
class Settings:
    duration_s: float
    rounds: int
    connections: tuple[int, ...]
    warmup_s: float = 1.0
    wrk_threads: int = 1


@dataclass
class Sample:
    section: str
    app: str
    call: str
    connections: int
    round: int
    measurement: Measurement
    load_average: float
    server_cpu_s: float | None = None

    @property
    def cpu_ms_per_request(self) -> float | None:
        if self.server_cpu_s is None or not self.measurement.requests:
            return None
        return 1000 * self.server_cpu_s / self.measurement.requests

    def as_dict(self) -> dict[str, object]:
        cpu = self.cpu_ms_per_request
        return {
            "section": self.section,
            "app": self.app,
            "call": self.call,
            "connections": self.connections,
            "round": self.round,
            "load_average_1m": round(self.load_average, 2),
            "server_cpu_ms_per_request": None if cpu is None else round(cpu, 3),
            **self.measurement.as_dict(),
        }


@dataclass(frozen=True)
class Summary:
    """Medians over rounds of one (section, app, call, connections)."""

    section: str
    app: str
    call: str
    connections: int
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int
    rounds: int
    per_round_rps: tuple[float, ...]
    cpu_ms_per_request: float | None
    in_flight: float

    def as_dict(self) -> dict[str, object]:
        return {
            "section": self.section,
            "app": self.app,
            "call": self.call,
            "connections": self.connections,
            "requests_per_second": round(self.requests_per_second, 1),
            "p50_ms": round(self.p50_ms, 2),
            "p99_ms": round(self.p99_ms, 2),
            "non_2xx": self.non_2xx,
            "socket_errors": self.socket_errors,
            "rounds": self.rounds,
            "per_round_rps": [round(rps, 1) for rps in self.per_round_rps],
            "in_flight": round(self.in_flight, 1),
            "cpu_ms_per_request": (
                None if self.cpu_ms_per_request is None else round(self.cpu_ms_per_request, 3)
            ),
        }


@dataclass
class Results:
    samples: list[Sample] = field(default_factory=list)

    def summaries(self) -> list[Summary]:
        groups: dict[tuple[str, str, str, int], list[Sample]] = {}
        for sample in self.samples:
            key = (sample.section, sample.app, sample.call, sample.connections)
            groups.setdefault(key, []).append(sample)
        return [_summarize(key, group) for key, group in groups.items()]

    def summary(self, section: str, app: str, call: str, connections: int) -> Summary | None:
        for summary in self.summaries():
            if (summary.section, summary.app, summary.call, summary.connections) == (
                section,
                app,
                call,
                connections,
            ):
                return summary
        return None


def _summarize(key: tuple[str, str, str, int], samples: list[Sample]) -> Summary:
    section, app, call, connections = key
    measurements = [sample.measurement for sample in sorted(samples, key=lambda s: s.round)]
    cpu = [s.cpu_ms_per_request for s in samples if s.cpu_ms_per_request is not None]
    return Summary(
        section=section,
        app=app,
        call=call,
        connections=connections,
        requests_per_second=statistics.median(m.requests_per_second for m in measurements),
        p50_ms=statistics.median(m.p50_ms for m in measurements),
        p99_ms=statistics.median(m.p99_ms for m in measurements),
        non_2xx=sum(m.non_2xx for m in measurements),
        socket_errors=sum(m.socket_errors for m in measurements),
        rounds=len(measurements),
        per_round_rps=tuple(m.requests_per_second for m in measurements),
        cpu_ms_per_request=statistics.median(cpu) if cpu else None,
        in_flight=statistics.median(m.in_flight for m in measurements),
    )


Progress = Callable[[str], None]
CpuProbe = Callable[[], float]


def interleave(
    section: str,
    targets: Sequence[tuple[str, Target]],
    calls: Sequence[str],
    settings: Settings,
    results: Results,
    progress: Progress,
    before_run: Callable[[str, str], None] | None = None,
    cpu_probes: dict[str, CpuProbe] | None = None,
) -> None:
    """Warm every app up on every call, then run the interleaved rounds into *results*.

    *before_run(app, call)*, when given, runs before each measured run (claims reset their
    stock of pending tasks there). *cpu_probes* give each app's server CPU seconds so far;
    the difference over a run, per request, does not depend on what else the machine runs.
    """
    cpu_probes = cpu_probes or {}
    if settings.warmup_s > 0:
        for name, target in targets:
            for call in calls:
                if before_run is not None:
                    before_run(name, call)
                run_wrk(target, call, connections=32, duration_s=settings.warmup_s)
    for round_number in range(settings.rounds):
        shift = round_number % len(targets)
        order = [*targets[shift:], *targets[:shift]]
        for call in calls:
            for connections in settings.connections:
                for name, target in order:
                    if before_run is not None:
                        before_run(name, call)
                    started = time.monotonic()
                    probe = cpu_probes.get(name)
                    cpu_before = probe() if probe else 0.0
                    measurement = run_wrk(
                        target,
                        call,
                        connections=connections,
                        duration_s=settings.duration_s,
                        threads=settings.wrk_threads,
                    )
                    cpu_used = probe() - cpu_before if probe else None
                    sample = Sample(
                        section=section,
                        app=name,
                        call=call,
                        connections=connections,
                        round=round_number + 1,
                        measurement=measurement,
                        load_average=os.getloadavg()[0],
                        server_cpu_s=cpu_used,
                    )
                    results.samples.append(sample)
                    progress(
                        f"[{section}] round {round_number + 1}/{settings.rounds} "
                        f"{call:>6} c={connections:<3} {name:<22} "
                        f"{measurement.requests_per_second:8.1f} req/s "
                        f"p50 {measurement.p50_ms:7.2f} ms p99 {measurement.p99_ms:8.2f} ms "
                        f"non-2xx {measurement.failures}"
                        + (
                            f" cpu {sample.cpu_ms_per_request:.2f} ms/req"
                            if sample.cpu_ms_per_request is not None
                            else ""
                        )
                        + (
                            f" (first bad status {measurement.first_bad_status})"
                            if measurement.first_bad_status
                            else ""
                        )
                        + f" [{time.monotonic() - started:.1f}s]"
                    )
