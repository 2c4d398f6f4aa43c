"""Deploys through the engine-backed machinery (engine_harness), from a copy of the repository:
cold, again with nothing changed, and again after a one-line app-code change. The copy takes
the app change, so the working tree is never modified."""

import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from bench.config import REPO_ROOT, Run
from bench.wrk import BenchError
from engine_harness import program
from engine_harness.free_resources import free_port

DRIVER: Final = Path(__file__).resolve().parent / "deploy_driver.py"
# What the harness and the program read, relative to the repository root.
COPIED: Final = ("infra", "service", "proxy", "engine_harness", "Pulumi.yaml", "Pulumi.dev.yaml")
DEPLOY_TIMEOUT: Final = 900


def copy_repository(destination: Path) -> Path:
    destination.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in COPIED:
        source = REPO_ROOT / name
        if source.is_dir():
            shutil.copytree(source, destination / name, ignore=ignore)
        else:
            shutil.copy2(source, destination / name)
    return destination


def stack_config(base_images: dict[str, str], subnet: str) -> dict[str, str]:
    """The dev stack's config (the copy's is the same file) with a free port, the given free
    subnet, no rate limit and the offline base images."""
    project = program.project_name()
    config = program.stack_config("dev")
    overrides = {
        "proxyPort": str(free_port()),
        "networkSubnet": subnet,
        "rateLimitPerSecond": "0",
        "apiBaseImage": base_images["api"],
        "proxyBaseImage": base_images["proxy"],
    }
    config.update({f"{project}:{key}": value for key, value in overrides.items()})
    return config


@dataclass
class Deploy:
    """One `up`: wall seconds (process start included), what happened to each resource."""

    seconds: float
    harness_seconds: float
    summary: dict[str, list[str]]
    kinds: dict[str, str]
    exports: dict[str, Any]
    # Why the deploy failed (a broken release), or None.
    error: str | None = None

    def containers(self, action: str) -> list[str]:
        return [n for n in self.summary[action] if self.kinds.get(n, "").startswith("container")]

    def container_kinds(self, action: str) -> list[str]:
        return sorted(self.kinds[name] for name in self.containers(action))

    def to_dict(self) -> dict[str, Any]:
        return {
            "seconds": self.seconds,
            "harness_seconds": self.harness_seconds,
            **{f"{action}": names for action, names in self.summary.items()},
            "containers_created": len(self.containers("created")),
            "containers_replaced": len(self.containers("replaced")),
            "containers_replaced_kinds": self.container_kinds("replaced"),
            "containers_unchanged": len(self.containers("unchanged")),
            "api_containers": self.exports.get("apiContainers", []),
        }


@dataclass
class BenchStack:
    """The bench's stack, deployed from a copy of the repository at `root`."""

    run: Run
    root: Path
    config: dict[str, str]
    deploys: list[Deploy] = field(default_factory=list)

    @property
    def state_file(self) -> Path:
        return self.root / ".engine-state" / f"{self.run.stack}.json"

    def set_config(self, key: str, value: str) -> None:
        self.config[f"{program.project_name()}:{key}"] = value

    def _driver(self, action: str, *, may_fail: bool = False) -> dict[str, Any]:
        config_file = self.root / "bench-config.json"
        config_file.write_text(json.dumps(self.config))
        arguments = [str(self.root), self.run.stack, str(self.state_file), str(config_file)]
        result = subprocess.run(  # noqa: S603 (this interpreter, the bench's own driver)
            [sys.executable, str(DRIVER), *arguments, action],
            capture_output=True,
            text=True,
            timeout=DEPLOY_TIMEOUT,
            check=False,
            cwd=self.root,
        )
        if result.returncode != 0 and not (may_fail and result.stdout.strip()):
            raise BenchError(f"deploy driver {action} failed:\n{result.stderr[-4000:]}")
        return dict(json.loads(result.stdout.strip().splitlines()[-1]))

    def up(self, *, may_fail: bool = False) -> Deploy:
        started = time.monotonic()
        output = self._driver("up", may_fail=may_fail)
        deploy = Deploy(
            seconds=round(time.monotonic() - started, 2),
            harness_seconds=output["seconds"],
            summary=output.get("summary", {}),
            kinds=output.get("kinds", {}),
            exports=output.get("exports", {}),
            error=output.get("error"),
        )
        self.deploys.append(deploy)
        return deploy

    def down(self) -> list[str]:
        return list(self._driver("down").get("removed", []))
