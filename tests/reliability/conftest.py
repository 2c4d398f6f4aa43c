"""One stack per test module, deployed from the dev config on a free port and always removed."""

import os
import shutil
import subprocess
from collections.abc import Iterator

import docker
import pytest

from tests.engine_stacks import Deployments, EngineStack, new_stack_name


@pytest.fixture(scope="module")
def deployments(
    docker_client: docker.DockerClient,
    base_images: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Deployments]:
    """The module's deployments: every stack deployed through it is removed after the module,
    also when a test (or a deploy) failed."""
    deployed = Deployments(docker_client, base_images, tmp_path_factory.mktemp("stacks"))
    try:
        yield deployed
    finally:
        deployed.close()


@pytest.fixture(scope="module")
def stack(deployments: Deployments) -> EngineStack:
    """The module's shared stack: the dev config (2 API replicas, no rate limit)."""
    return deployments.up(new_stack_name(), rateLimitPerSecond="0")


@pytest.fixture(scope="session")
def wrk() -> str:
    """The wrk load generator, installed from Debian's packages if missing."""
    path = shutil.which("wrk")
    if path is None:
        for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "wrk"]):
            subprocess.run(
                command,
                check=False,
                capture_output=True,
                timeout=300,
                env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            )
        path = shutil.which("wrk")
    if path is None:
        pytest.fail("wrk is not installed and `apt-get install wrk` did not install it")
    return path
