"""The bench's stack, deployed as `make local-up` does (`python -m engine_harness up --json`, a
process per deploy) from a copy of the repository: cold, again with nothing changed, then the
redeploys of scenarios.toml under a steady stream of requests. The copy takes the changes, so
the working tree is never modified."""

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

from bench.config import REPO_ROOT, BenchError, Run, rows
from engine_harness import program
from engine_harness.free_resources import free_port
from engine_harness.request_stream import RequestStream

REDEPLOYS: Final = rows(
    "redeploy",
    ("key", "title"),
    append={},
    restore=[],
    config={},
    fails=False,
    quick=True,
    api=True,
)
# What a copy leaves out: the tools' caches and state, and what no deploy reads.
NOT_COPIED: Final = shutil.ignore_patterns(
    ".git", ".venv", "*_cache", "__pycache__", "*.pyc", ".engine-state", ".pulumi-state", "results"
)
AFTER: Final = 200  # requests answered after a redeploy returned, before the stream stops


@dataclass
class Deploy:
    """One `up`: its figures for results.json, the stack's exports, and why it failed (a
    broken release) or None."""

    figures: dict[str, Any]
    exports: dict[str, Any]
    error: str | None


@dataclass
class BenchStack:
    """The bench's stack, deployed from a copy of the repository at `root`."""

    run: Run
    root: Path
    config: dict[str, str]

    @classmethod
    def create(cls, run: Run, root: Path, bases: dict[str, str], subnet: str) -> "BenchStack":
        """The dev stack's config with a free port, the given free subnet, no rate limit and
        the offline base images."""
        shutil.copytree(REPO_ROOT, root, ignore=NOT_COPIED)
        stack = cls(run, root, program.stack_config("dev"))
        stack.configure(proxyPort=str(free_port()), networkSubnet=subnet, rateLimitPerSecond="0")
        stack.configure(apiBaseImage=bases["api"], proxyBaseImage=bases["proxy"])
        return stack

    def configure(self, **values: str) -> None:
        self.config |= {f"{program.project_name()}:{key}": value for key, value in values.items()}

    def _harness(self, action: str) -> subprocess.CompletedProcess[str]:
        stack = self.run.stack
        (self.root / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump({"config": self.config}))
        command = [sys.executable, "-m", "engine_harness", action, "--stack", stack, "--json"]
        # This interpreter, the copy's own harness (the working folder comes first for -m).
        return subprocess.run(  # noqa: S603
            command, capture_output=True, text=True, timeout=900, check=False, cwd=self.root
        )

    def up(self, *, may_fail: bool = False) -> Deploy:
        """Wall seconds (process start included), the harness's own, and what happened to
        each resource, containers counted apart."""
        started = time.monotonic()
        result = self._harness("up")
        seconds = round(time.monotonic() - started, 2)
        if result.returncode != 0 and not (may_fail and result.stdout.strip()):
            raise BenchError(f"engine_harness up failed:\n{result.stderr[-4000:]}")
        output = json.loads(result.stdout.strip().splitlines()[-1])
        summary, kinds = output.get("summary", {}), output.get("kinds", {})
        containers = {
            action: [n for n in summary.get(action, []) if kinds.get(n, "").startswith("container")]
            for action in ("created", "replaced", "unchanged")
        }
        figures = {
            "seconds": seconds,
            "harness_seconds": output["seconds"],
            **summary,
            "containers_created": len(containers["created"]),
            "containers_replaced": len(containers["replaced"]),
            "containers_replaced_kinds": sorted(kinds[n] for n in containers["replaced"]),
            "containers_unchanged": len(containers["unchanged"]),
            "api_containers": output.get("exports", {}).get("apiContainers", []),
        }
        return Deploy(figures, output.get("exports", {}), output.get("error"))

    def down(self) -> None:
        result = self._harness("down")
        if result.returncode != 0:
            raise BenchError(f"engine_harness down failed:\n{result.stderr[-4000:]}")


def redeploys(
    stack: BenchStack,
    url: str,
    quick: bool,
    after: Callable[[str, Deploy], None],
    ca_file: str | None = None,
) -> tuple[dict[str, Any], dict[str, Deploy]]:
    """Each redeploy in turn on the deployed stack, while engine_harness.request_stream sends
    requests from before the deploy until AFTER more were answered after it: the figures, and
    each successful Deploy. `after(key, deploy)` runs right after each successful deploy."""
    results: dict[str, Any] = {}
    deploys: dict[str, Deploy] = {}
    for redeploy in [r for r in REDEPLOYS if r["quick"] or not quick]:
        for relative, text in redeploy["append"].items():
            with (stack.root / relative).open("a", encoding="utf-8") as file:
                file.write(text)
        for relative in redeploy["restore"]:
            shutil.copy(REPO_ROOT / relative, stack.root / relative)
        stack.configure(**redeploy["config"])
        with RequestStream(url, ca_file=ca_file) as stream:
            deploy = stack.up(may_fail=redeploy["fails"])
            stream.wait_for_successes(len(stream.tally.results) + AFTER)
        if deploy.error is None:
            deploys[redeploy["key"]] = deploy
            after(redeploy["key"], deploy)
        results[redeploy["key"]] = {
            "title": redeploy["title"],
            "seconds": deploy.figures["seconds"],
            "deploy_failed": deploy.error is not None,
            "expected_to_fail": redeploy["fails"],
            "requests": len(stream.tally.results),
            "failed": len(stream.tally.failed),
            "slowest_s": round(stream.tally.slowest, 3),
            "no_answer_s": round(stream.tally.outage(), 2),
            "replaced": deploy.figures.get("replaced", []),
        }
    return results, deploys
