"""The load matrix: every scenario at every concurrency, warmed up, then measured several
times, the scenarios taking turns run by run so that a noisy moment of the shared host falls
on all of them alike; each figure is the median of the runs."""

import statistics
import sys
from dataclasses import dataclass
from typing import Any

from bench import wrk
from bench.config import Timing


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    how: str
    target: wrk.Target
    headers: tuple[str, ...] = ()


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 3)


def summarize(runs: list[wrk.LoadRun]) -> dict[str, Any]:
    """Medians over the runs; error counts added up."""
    parts = runs[0].cpu_cores.keys()
    return {
        "rps": _median([r.rps for r in runs]),
        "p50_ms": _median([r.p50_ms for r in runs]),
        "p90_ms": _median([r.p90_ms for r in runs]),
        "p99_ms": _median([r.p99_ms for r in runs]),
        "mean_ms": _median([r.mean_ms for r in runs]),
        "requests": sum(r.requests for r in runs),
        "non_2xx": sum(r.non_2xx for r in runs),
        "socket_errors": sum(sum(r.socket_errors.values()) for r in runs),
        "cpu_cores": {p: _median([r.cpu_cores[p] for r in runs]) for p in parts},
        "cpu_us_per_request": {p: _median([r.cpu_us_per_request[p] for r in runs]) for p in parts},
        "rps_spread": [min(r.rps for r in runs), max(r.rps for r in runs)],
    }


def _describe(name: str, run: wrk.LoadRun) -> str:
    return (
        f"{name} c={run.concurrency}: {run.rps:.0f} req/s, p50 {run.p50_ms:.2f} ms,"
        f" p99 {run.p99_ms:.2f} ms, errors {run.errors}, load {run.loadavg_1m}"
    )


def measure(
    scenarios: list[Scenario],
    concurrencies: tuple[int, ...],
    timing: Timing,
    *,
    seconds: int,
    runs: int,
) -> dict[str, dict[str, Any]]:
    """{scenario: {concurrency: {"median": ..., "runs": [...], "warmup": ...}}}."""
    results: dict[str, dict[str, Any]] = {s.key: {} for s in scenarios}
    for concurrency in concurrencies:
        warmups = {}
        for scenario in scenarios:
            warmup = wrk.run(scenario.target, concurrency, timing.warmup_s, scenario.headers)
            warmups[scenario.key] = warmup
            log(f"warm-up {_describe(scenario.key, warmup)}")
        measured: dict[str, list[wrk.LoadRun]] = {s.key: [] for s in scenarios}
        for index in range(runs):
            for scenario in scenarios:
                result = wrk.run(scenario.target, concurrency, seconds, scenario.headers)
                measured[scenario.key].append(result)
                log(f"run {index + 1}/{runs} {_describe(scenario.key, result)}")
        for scenario in scenarios:
            results[scenario.key][str(concurrency)] = {
                "median": summarize(measured[scenario.key]),
                "runs": [r.to_dict() for r in measured[scenario.key]],
                "warmup": warmups[scenario.key].to_dict(),
            }
    return results
