"""Redeploys of the bench's stack under a steady stream of requests through its proxy.

One record per scenario: the change made to the copy of the repository (or its config), and
whether the deploy is meant to fail. Each is deployed while engine_harness.request_stream
sends requests from before the deploy until well after it; the figures are the deploy's
seconds, the requests that failed or took 2 s or more, the slowest request, and the longest
time with no answer.
"""

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from bench.config import REPO_ROOT
from bench.deploys import BenchStack, Deploy
from bench.images import APP_FILE
from engine_harness.request_stream import RequestStream

# Requests answered after the deploy returned, before the stream stops.
AFTER: Final = 200
BROKEN: Final = 'raise RuntimeError("bench: a release that never becomes healthy")\n'


def _append(relative: str, text: str) -> Callable[[BenchStack], None]:
    def change(stack: BenchStack) -> None:
        with (stack.root / relative).open("a", encoding="utf-8") as file:
            file.write(text)

    return change


def _restore(relative: str) -> Callable[[BenchStack], None]:
    def change(stack: BenchStack) -> None:
        shutil.copy(REPO_ROOT / relative, stack.root / relative)

    return change


def _config(key: str, value: str) -> Callable[[BenchStack], None]:
    def change(stack: BenchStack) -> None:
        stack.set_config(key, value)

    return change


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    change: Callable[[BenchStack], None]
    fails: bool = False  # the release is broken: the deploy must fail, and nothing else
    quick: bool = True  # also in --quick runs (the broken release waits a full health timeout)


ROUTES: Final = f"service/{APP_FILE}"
SCENARIOS: Final = (
    Scenario("app_change", "app-code change", _append(ROUTES, "# bench: a code change\n")),
    Scenario("config_change", "config change (apiWorkers 1 -> 2)", _config("apiWorkers", "2")),
    Scenario("broken", "broken release (never healthy)", _append(ROUTES, BROKEN), True, False),
    Scenario("fixed", "the fixed release after it", _restore(ROUTES), quick=False),
    Scenario("proxy_change", "proxy change (nginx.conf)", _append("proxy/nginx.conf", "#\n")),
)


def measure(
    stack: BenchStack, url: str, quick: bool, after: Callable[[str, Deploy], None]
) -> tuple[dict[str, Any], dict[str, Deploy]]:
    """Every scenario in turn on the deployed stack; the figures, and each successful Deploy.
    `after(key, deploy)` runs right after each successful deploy (before the next changes
    anything)."""
    figures: dict[str, Any] = {}
    deploys: dict[str, Deploy] = {}
    for scenario in SCENARIOS:
        if quick and not scenario.quick:
            continue
        scenario.change(stack)
        with RequestStream(url) as stream:
            deploy = stack.up(may_fail=scenario.fails)
            stream.wait_for_successes(len(stream.tally.results) + AFTER)
        tally = stream.tally
        if deploy.error is None:
            deploys[scenario.key] = deploy
            after(scenario.key, deploy)
        figures[scenario.key] = {
            "title": scenario.title,
            "seconds": deploy.seconds,
            "deploy_failed": deploy.error is not None,
            "expected_to_fail": scenario.fails,
            "requests": len(tally.results),
            "failed": len(tally.failed),
            "slowest_s": round(tally.slowest, 3),
            "no_answer_s": round(tally.outage(), 2),
            "replaced": deploy.summary.get("replaced", []),
        }
    return figures, deploys
