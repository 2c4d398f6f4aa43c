"""A copy of this checkout per test, deploying its own stack as a user's would: each `up` is a
new `python -m engine_harness up` process, run where the copy is, with its own
Pulumi.<stack>.yaml, so a test can change the app's code, the proxy or the config between two
deploys without touching the repository."""

import contextlib
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import pytest
import yaml

import contract
from engine_harness.__main__ import ca_path
from engine_harness.docker_mocks import load_state
from tests.conftest import REPO_ROOT
from tests.engine_stacks import PROJECT, full_config, new_stack_name, side_by_side_config, trust

# What a copy leaves out: the tools' caches, state and passphrase, and everything no deploy reads.
NOT_COPIED = shutil.ignore_patterns(
    ".git", ".venv", "*_cache", "__pycache__", ".engine-state", ".pulumi-*", "results"
)
DEPLOY_TIMEOUT = 600


@dataclass
class Deploy:
    """One `python -m engine_harness up`: its exit code, output and duration."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def url(self) -> str:
        return self.stdout.strip().splitlines()[-1]


@dataclass
class Checkout:
    root: Path
    stack: str
    client: docker.DockerClient
    config: dict[str, str] = field(default_factory=dict)

    @property
    def prefix(self) -> str:
        return f"{PROJECT}-{self.stack}"

    def up(self, **overrides: str) -> Deploy:
        """Deploy with the config so far plus `overrides` (keys without the project)."""
        self.config |= full_config(overrides)
        config_file = self.root / f"Pulumi.{self.stack}.yaml"
        config_file.write_text(yaml.safe_dump({"config": self.config}))
        started = time.monotonic()
        done = self._harness("up")
        took = time.monotonic() - started
        ca_file = ca_path(self.state_file)
        if ca_file.is_file():
            trust(ca_file.read_text())
        return Deploy(done.returncode, done.stdout, done.stderr, took)

    def down(self) -> None:
        self._harness("down")
        for role in (contract.ROLE_API, contract.ROLE_PROXY):
            # Never built, or in use by another image's tag: left alone.
            with contextlib.suppress(docker.errors.APIError):
                self.client.images.remove(f"{self.prefix}-{role}:{self.stack}")

    def edit(self, relative: str, text: str) -> None:
        """Append `text` to a file of the copy (a release's change)."""
        with (self.root / relative).open("a") as file:
            file.write(text)

    def restore(self, relative: str) -> None:
        shutil.copy(REPO_ROOT / relative, self.root / relative)

    @property
    def state_file(self) -> Path:
        return self.root / ".engine-state" / f"{self.prefix}.json"

    def state(self) -> list[dict[str, Any]]:
        """The harness's state file: what Pulumi's state would record."""
        return [record.__dict__ for record in load_state(self.state_file)]

    def api_containers(self) -> list[Any]:
        labels = [
            f"{contract.LABEL_PROJECT}={PROJECT}",
            f"{contract.LABEL_STACK}={self.stack}",
            f"{contract.LABEL_ROLE}={contract.ROLE_API}",
        ]
        return list(self.client.containers.list(all=True, filters={"label": labels}))

    def _harness(self, action: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "engine_harness", action, "--stack", self.stack],
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=DEPLOY_TIMEOUT,
            check=False,
        )


@pytest.fixture
def checkout(
    docker_client: docker.DockerClient, base_images: dict[str, str], tmp_path: Path
) -> Iterator[Checkout]:
    """A copy of the checkout with a stack of its own (free port and subnet, offline base
    images), removed with its images after the test."""
    root = tmp_path / "checkout"
    shutil.copytree(REPO_ROOT, root, ignore=NOT_COPIED)
    copy = Checkout(
        root, new_stack_name(), docker_client, side_by_side_config(docker_client, base_images)
    )
    try:
        yield copy
    finally:
        copy.down()
