"""What one benchmark run measures and for how long, and the names of what it creates."""

import os
import sys
import tomllib
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
RESULTS_DIR: Final = REPO_ROOT / "bench" / "results"
# What is measured, as data: scenarios, ratios, settings compared, redeploys, targets.
TABLES: Final = tomllib.loads((REPO_ROOT / "bench" / "scenarios.toml").read_text())
# Every container, network and image the bench creates itself carries this label, valued with
# the run's id ("<pid>-<hex>"): a later run removes what a dead run left behind. Its stacks are
# named bench<pid>x<hex>.
BENCH_LABEL: Final = "pulumi-flask-rebar.bench"
STACK_PREFIX: Final = "bench"
PATH: Final = "/"  # the one request every scenario measures


class BenchError(RuntimeError):
    """The benchmark cannot go on; the message says why."""


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def rows(table: str, required: tuple[str, ...], **defaults: Any) -> list[dict[str, Any]]:
    """The rows of a table of scenarios.toml, with the defaults of the keys they leave out."""
    for row in TABLES[table]:
        wrong = set(required) - set(row) | set(row) - set(required) - set(defaults)
        if wrong:
            raise ValueError(f"scenarios.toml: {table} {row.get('key')!r}: keys {sorted(wrong)}")
    return [defaults | row for row in TABLES[table]]


@dataclass(frozen=True)
class Timing:
    """Load durations (whole seconds, wrk's unit), runs per figure and concurrencies. The
    settings compared ("sweep") take shorter runs at the highest concurrency; sustained load
    is `sustained_segments` consecutive runs of `sustained_s`, without a pause."""

    duration_s: int = 5
    warmup_s: int = 2
    runs: int = 3
    concurrencies: tuple[int, ...] = (1, 16, 64)
    sweep_duration_s: int = 4
    sweep_runs: int = 3
    sustained_s: int = 10
    sustained_segments: int = 6


FULL: Final = Timing()
# A second of load per figure and one run each: proves the benchmark works (CI).
QUICK: Final = Timing(1, 1, 1, (1, 16, 64), 1, 1, 1, 2)


@dataclass(frozen=True)
class Run:
    """One invocation: its timing, where results go, and the names of its Docker objects."""

    timing: Timing
    out_dir: Path
    quick: bool
    run_id: str = field(default_factory=lambda: f"{os.getpid()}-{uuid.uuid4().hex[:6]}")

    @property
    def stack(self) -> str:
        pid, _, token = self.run_id.partition("-")
        return f"{STACK_PREFIX}{pid}x{token}"

    def name(self, what: str) -> str:
        """A Docker object name of this run."""
        return f"pfr-bench-{self.run_id}-{what}"

    @property
    def labels(self) -> dict[str, str]:
        return {BENCH_LABEL: self.run_id}
