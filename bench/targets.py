"""The targets of issue 4, and whether a run meets them.

Ratios come from the PostgreSQL section at 32 connections; the p99 bound from 128.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from bench.measure import CALLS, Results

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
