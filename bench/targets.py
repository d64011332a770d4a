"""The targets of issues 4 and 15, and whether a run meets them.

Issue 4: taskyard against raw and the tutorial, from the PostgreSQL section (ratios at 32
connections, the p99 bound at 128). Issue 15: against the ceiling (FastAPI + pydantic on bare
asyncpg): sessionwise as its README teaches in the library section, against the ceiling and
the best peer at 32 connections; taskyard as deployed in the PostgreSQL section, where the
ceiling runs beside it (ratio at 32, p99 at 128).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from bench.measure import CALLS, Results, Summary

RATIO_CONNECTIONS = 32
P99_CONNECTIONS = 128
P99_FACTOR = 3.0

# call: (taskyard / raw at least, taskyard / tutorial at least)
RATIO_TARGETS = {
    "get": (0.50, 2.0),
    "list": (0.50, 2.0),
    "create": (0.40, 2.0),
    "patch": (0.35, 2.0),
}


@dataclass(frozen=True)
class CallVerdict:
    call: str
    vs_raw: float | None
    vs_raw_target: float
    vs_tutorial: float | None
    vs_tutorial_target: float
    p99_vs_raw_at_128: float | None
    taskyard_non_2xx: int
    # The same ratios from server CPU per request (raw's over taskyard's): what the throughput
    # ratio would be if each server had a core to itself, whatever else the machine runs.
    vs_raw_by_cpu: float | None = None
    vs_tutorial_by_cpu: float | None = None

    @property
    def vs_raw_met(self) -> bool | None:
        return None if self.vs_raw is None else self.vs_raw >= self.vs_raw_target

    @property
    def vs_tutorial_met(self) -> bool | None:
        return None if self.vs_tutorial is None else self.vs_tutorial >= self.vs_tutorial_target

    @property
    def p99_met(self) -> bool | None:
        return None if self.p99_vs_raw_at_128 is None else self.p99_vs_raw_at_128 <= P99_FACTOR

    def as_dict(self) -> dict[str, object]:
        return {
            **asdict(self),
            "vs_raw_met": self.vs_raw_met,
            "vs_tutorial_met": self.vs_tutorial_met,
            "p99_met": self.p99_met,
        }


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 3)


def evaluate(results: Results) -> list[CallVerdict]:
    verdicts = []
    for call in CALLS:

        def rps(app: str, call: str = call) -> float | None:
            summary = results.summary("postgres", app, call, RATIO_CONNECTIONS)
            return None if summary is None else summary.requests_per_second

        def cpu(app: str, call: str = call) -> float | None:
            summary = results.summary("postgres", app, call, RATIO_CONNECTIONS)
            return None if summary is None else summary.cpu_ms_per_request

        def p99(app: str, call: str = call) -> float | None:
            summary = results.summary("postgres", app, call, P99_CONNECTIONS)
            return None if summary is None else summary.p99_ms

        taskyard_failures = sum(
            summary.non_2xx + summary.socket_errors
            for summary in results.summaries()
            if summary.section == "postgres" and summary.app == "taskyard" and summary.call == call
        )
        raw_target, tutorial_target = RATIO_TARGETS[call]
        verdicts.append(
            CallVerdict(
                call=call,
                vs_raw=_ratio(rps("taskyard"), rps("raw")),
                vs_raw_target=raw_target,
                vs_tutorial=_ratio(rps("taskyard"), rps("tutorial")),
                vs_tutorial_target=tutorial_target,
                p99_vs_raw_at_128=_ratio(p99("taskyard"), p99("raw")),
                taskyard_non_2xx=taskyard_failures,
                vs_raw_by_cpu=_ratio(cpu("raw"), cpu("taskyard")),
                vs_tutorial_by_cpu=_ratio(cpu("tutorial"), cpu("taskyard")),
            )
        )
    return verdicts


# -- issue 15: against the ceiling --------------------------------------------------------------

LIBRARY_VS_CEILING = 0.50
LIBRARY_VS_BEST_PEER = 1.5
TASKYARD_VS_CEILING = 0.40
TASKYARD_P99_VS_CEILING = 2.0
PEERS = ("tutorial", "fastapi-sqla", "advanced-alchemy")


@dataclass(frozen=True)
class CeilingVerdict:
    call: str
    sessionwise_vs_ceiling: float | None
    best_peer: str | None
    sessionwise_vs_best_peer: float | None
    taskyard_vs_ceiling: float | None
    taskyard_p99_vs_ceiling_at_128: float | None
    library_non_2xx: int
    # From server CPU per request (the ceiling's over the app's), as for issue 4.
    sessionwise_vs_ceiling_by_cpu: float | None = None
    taskyard_vs_ceiling_by_cpu: float | None = None

    @staticmethod
    def _at_least(value: float | None, target: float) -> bool | None:
        return None if value is None else value >= target

    def as_dict(self) -> dict[str, object]:
        p99 = self.taskyard_p99_vs_ceiling_at_128
        return {
            **asdict(self),
            "sessionwise_vs_ceiling_met": self._at_least(
                self.sessionwise_vs_ceiling, LIBRARY_VS_CEILING
            ),
            "sessionwise_vs_best_peer_met": self._at_least(
                self.sessionwise_vs_best_peer, LIBRARY_VS_BEST_PEER
            ),
            "taskyard_vs_ceiling_met": self._at_least(
                self.taskyard_vs_ceiling, TASKYARD_VS_CEILING
            ),
            "taskyard_p99_met": None if p99 is None else p99 <= TASKYARD_P99_VS_CEILING,
        }


def evaluate_ceiling(results: Results) -> list[CeilingVerdict]:
    verdicts = []
    for call in CALLS:

        def library(app: str, call: str = call) -> Summary | None:
            return results.summary("library", app, call, RATIO_CONNECTIONS)

        def postgres(app: str, connections: int, call: str = call) -> Summary | None:
            return results.summary("postgres", app, call, connections)

        def rps(summary: Summary | None) -> float | None:
            return None if summary is None else summary.requests_per_second

        def cpu(summary: Summary | None) -> float | None:
            return None if summary is None else summary.cpu_ms_per_request

        peers = {peer: rps(library(peer)) for peer in PEERS}
        measured = {peer: value for peer, value in peers.items() if value}
        best = max(measured, key=lambda peer: measured[peer]) if measured else None
        sessionwise = library("sessionwise")
        ceiling = library("ceiling")
        taskyard = postgres("taskyard", RATIO_CONNECTIONS)
        postgres_ceiling = postgres("ceiling", RATIO_CONNECTIONS)
        p99_taskyard = postgres("taskyard", P99_CONNECTIONS)
        p99_ceiling = postgres("ceiling", P99_CONNECTIONS)
        verdicts.append(
            CeilingVerdict(
                call=call,
                sessionwise_vs_ceiling=_ratio(rps(sessionwise), rps(ceiling)),
                best_peer=best,
                sessionwise_vs_best_peer=_ratio(rps(sessionwise), measured[best] if best else None),
                taskyard_vs_ceiling=_ratio(rps(taskyard), rps(postgres_ceiling)),
                taskyard_p99_vs_ceiling_at_128=_ratio(
                    None if p99_taskyard is None else p99_taskyard.p99_ms,
                    None if p99_ceiling is None else p99_ceiling.p99_ms,
                ),
                library_non_2xx=sum(
                    summary.non_2xx + summary.socket_errors
                    for summary in results.summaries()
                    if summary.section == "library" and summary.call == call
                ),
                sessionwise_vs_ceiling_by_cpu=_ratio(cpu(ceiling), cpu(sessionwise)),
                taskyard_vs_ceiling_by_cpu=_ratio(cpu(postgres_ceiling), cpu(taskyard)),
            )
        )
    return verdicts
