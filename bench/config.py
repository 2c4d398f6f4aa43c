"""What one benchmark run measures and for how long, and the names of what it creates."""

import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from engine_harness.program import offline_base_images

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
RESULTS_DIR: Final = REPO_ROOT / "bench" / "results"
# Every container, network and image the bench creates itself carries this label, valued with
# the run's id ("<pid>-<hex>"): a later run removes what a dead run left behind.
BENCH_LABEL: Final = "pulumi-flask-rebar.bench"
# Stacks the bench deploys through the engine harness are named bench<pid>x<hex>.
STACK_PREFIX: Final = "bench"
# The one request every scenario measures, and what the fixed-response ceiling answers.
PATH: Final = "/"
HELLO_BODY: Final = '{"message":"Hello, Being!"}\n'


@dataclass(frozen=True)
class Timing:
    """Load durations (whole seconds, wrk's unit), runs per figure and concurrencies."""

    duration_s: int
    warmup_s: int
    runs: int
    concurrencies: tuple[int, ...]
    # The worker sweep and the proxy variants: shorter runs at the highest concurrency.
    sweep_duration_s: int
    sweep_runs: int
    # Sustained load through the proxy: consecutive runs of sustained_s, without a pause.
    sustained_s: int
    sustained_segments: int


FULL: Final = Timing(
    duration_s=5,
    warmup_s=2,
    runs=3,
    concurrencies=(1, 16, 64),
    sweep_duration_s=4,
    sweep_runs=3,
    sustained_s=10,
    sustained_segments=6,
)
QUICK: Final = Timing(
    duration_s=1,
    warmup_s=1,
    runs=1,
    concurrencies=(1, 16, 64),
    sweep_duration_s=1,
    sweep_runs=1,
    sustained_s=1,
    sustained_segments=2,
)


def _run_id() -> str:
    return f"{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class Run:
    """One invocation: its timing, where results go, and the names of its Docker objects."""

    timing: Timing
    out_dir: Path
    quick: bool
    run_id: str = field(default_factory=_run_id)

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


def base_images() -> dict[str, str]:
    """The offline base images by role, as the tests use them."""
    return offline_base_images()
