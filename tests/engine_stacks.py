"""Stacks deployed on the real Docker engine through the engine harness, for engine tests.

`Deployments.up(stack, **config)` runs the Pulumi program with the dev stack's config (on a
free port and subnet, with the offline base images, plus the given overrides); `close()`
removes every container, network and image tag of every stack it deployed, also after a
failed deploy.
"""

import contextlib
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import docker
import docker.errors

import contract
from engine_harness.__main__ import remove_labelled
from engine_harness.docker_mocks import EngineMocks, Summary, destroy
from engine_harness.free_resources import free_port, free_subnet
from engine_harness.program import REPO_ROOT, project_name, run_program, stack_config
from settings import Settings, settings_from

PROJECT = project_name()


def full_config(values: dict[str, str]) -> dict[str, str]:
    """Config keys as Pulumi.<stack>.yaml spells them: "<project>:<key>"."""
    return {f"{PROJECT}:{key}": value for key, value in values.items()}


def new_stack_name() -> str:
    """A stack name no other test run uses."""
    return f"t{uuid.uuid4().hex[:10]}"


@dataclass
class EngineStack:
    name: str
    state_file: Path
    config: dict[str, str]
    exports: dict[str, Any] = field(default_factory=dict)
    summary: Summary = field(default_factory=Summary)
    # The read-back check after the deploy (EngineMocks.drift): empty when all is as declared.
    drift: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return str(self.exports[contract.EXPORT_URL])

    @property
    def settings(self) -> Settings:
        """The stack's config as the program reads it."""
        return settings_from({key.split(":", 1)[1]: value for key, value in self.config.items()})


def side_by_side_config(client: docker.DockerClient, base_images: dict[str, str]) -> dict[str, str]:
    """The dev stack's config for a stack of its own next to others: a free port and subnet,
    and the offline base images (keys in full, "<project>:<key>")."""
    return stack_config("dev") | full_config(
        {
            "proxyPort": str(free_port()),
            "networkSubnet": free_subnet(client),
            "apiBaseImage": base_images["api"],
            "proxyBaseImage": base_images["proxy"],
        }
    )


class Deployments:
    """Deploys stacks through the engine harness; `close()` removes all of them."""

    def __init__(
        self,
        client: docker.DockerClient,
        base_images: dict[str, str],
        state_dir: Path,
        subnets_of: docker.DockerClient | None = None,
    ) -> None:
        self.client = client
        self.base_images = base_images
        self.state_dir = state_dir
        # The engine whose networks a new stack's subnet must not overlap (its own by default).
        self.subnets_of = subnets_of or client
        self.stacks: list[EngineStack] = []

    def up(self, stack: str, **overrides: str) -> EngineStack:
        """Deploy (or update) `stack`: the config of its last deploy, else the dev stack's on a
        free port, with `overrides` on top. Raises what the program raises."""
        return self._deploy(stack, overrides, refresh=False)

    def up_refreshed(self, stack: str) -> EngineStack:
        """`pulumi up --refresh` of `stack` with the config of its last deploy."""
        return self._deploy(stack, {}, refresh=True)

    def _deploy(self, stack: str, overrides: dict[str, str], *, refresh: bool) -> EngineStack:
        earlier = [record.config for record in self.stacks if record.name == stack]
        base = earlier[-1] if earlier else self.default_config()
        record = EngineStack(stack, self.state_dir / f"{stack}.json", base | full_config(overrides))
        # Recorded before the run, so a failed deploy is removed too.
        self.stacks.append(record)
        mocks = EngineMocks(self.client, record.state_file)
        if refresh:
            mocks.refresh()
        record.exports = run_program(mocks, stack, record.config, PROJECT)
        record.summary = mocks.finish()
        record.drift = mocks.drift()
        return record

    def default_config(self) -> dict[str, str]:
        return side_by_side_config(self.subnets_of, self.base_images)

    def close(self) -> None:
        """Remove every deployed stack's containers and networks (by state, then by label)
        and its image tags. Every step is tried, even after one failed; the first failure is
        raised at the end. Safe to call more than once."""
        failures: list[Exception] = []
        for name in dict.fromkeys(record.name for record in reversed(self.stacks)):
            for step in (
                partial(destroy, self.client, self.state_dir / f"{name}.json"),
                partial(remove_labelled, self.client, PROJECT, name),
            ):
                try:
                    step()
                except (docker.errors.DockerException, OSError) as failure:
                    failures.append(failure)
            for role in ("api", "proxy"):
                # Never built, or still used by something else: left alone.
                with contextlib.suppress(docker.errors.APIError):
                    self.client.images.remove(f"{PROJECT}-{name}-{role}:{name}")
        if failures:
            raise failures[0]


def stack_objects(client: docker.DockerClient, stack: str) -> list[str]:
    """Names of the containers and networks labelled as this project's `stack`."""
    labels = [f"{contract.LABEL_PROJECT}={PROJECT}", f"{contract.LABEL_STACK}={stack}"]
    containers = client.containers.list(all=True, filters={"label": labels})
    networks = client.networks.list(filters={"label": labels})
    return [c.name for c in containers] + [n.name for n in networks]


def smoke(url: str) -> subprocess.CompletedProcess[str]:
    """scripts/smoke_test.py against `url`."""
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "smoke_test.py"), url, "--wait", "30"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
