"""A swarm to deploy to: the test engine itself as a one-node swarm, and a copy of the checkout
whose stack runs on it (Pulumi.swarm.yaml's config on a free port and subnet)."""

import shutil
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.conftest import REPO_ROOT
from tests.engine_stacks import Deployments, new_stack_name, side_by_side_config
from tests.rolling.conftest import NOT_COPIED, Checkout

SWARM = "swarm"


@pytest.fixture(scope="session")
def swarm_engine(docker_client: docker.DockerClient) -> Iterator[docker.DockerClient]:
    """The test engine as a one-node swarm's manager: made one if it is not (its address on
    loopback only), and made to leave again after the tests."""
    state = docker_client.info()["Swarm"]
    joined_here = state.get("LocalNodeState") != "active"
    if joined_here:
        docker_client.swarm.init(advertise_addr="127.0.0.1", listen_addr="127.0.0.1:2377")
    elif not state.get("ControlAvailable"):
        pytest.fail("the test engine is a swarm worker: the swarm tests need a manager")
    yield docker_client
    if joined_here:
        docker_client.swarm.leave(force=True)


@pytest.fixture
def swarm_deployments(
    swarm_engine: docker.DockerClient, base_images: dict[str, str], tmp_path: Path
) -> Iterator[Deployments]:
    """This test's own stacks on the one-node swarm, removed afterwards."""
    deployments = Deployments(swarm_engine, base_images, tmp_path, stack_file=SWARM)
    try:
        yield deployments
    finally:
        deployments.close()


@pytest.fixture
def swarm_checkout(
    swarm_engine: docker.DockerClient, base_images: dict[str, str], tmp_path: Path
) -> Iterator[Checkout]:
    """A copy of the checkout with a swarm stack of its own, removed with its images after."""
    root = tmp_path / "checkout"
    shutil.copytree(REPO_ROOT, root, ignore=NOT_COPIED)
    config = side_by_side_config(swarm_engine, base_images, SWARM)
    copy = Checkout(root, new_stack_name(), swarm_engine, config)
    try:
        yield copy
    finally:
        copy.down()
