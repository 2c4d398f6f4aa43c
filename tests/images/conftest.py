"""Fixtures of the image tests: both images built once per session, a fresh stack per test.

The stack is per test because the suite-wide check after each engine test wants no labelled
container or network left; the images are built once and removed at the session's end.
"""

from collections.abc import Iterator

import docker
import pytest

import contract
from tests.images.stack import (
    REPO_ROOT,
    Images,
    Running,
    Stack,
    build_image,
    remove_image,
)


@pytest.fixture(scope="session")
def images(docker_client: docker.DockerClient, base_images: dict[str, str]) -> Iterator[Images]:
    built: list[str] = []
    try:
        for context, base in [(contract.API_CONTEXT, "api"), (contract.PROXY_CONTEXT, "proxy")]:
            built.append(build_image(docker_client, REPO_ROOT / context, base_images[base]).tag)
        yield Images(api=built[0], proxy=built[1])
    finally:
        for tag in built:
            # Keep the layers below the tag: they are the build cache of the next run.
            remove_image(docker_client, tag, prune=False)


@pytest.fixture
def stack(docker_client: docker.DockerClient, images: Images, unique_name: str) -> Iterator[Stack]:
    """An empty stack (no network, no container yet) that removes what it made at teardown."""
    made = Stack(docker_client, unique_name, images.api, images.proxy)
    try:
        yield made
    finally:
        made.remove_all()


@pytest.fixture
def running(stack: Stack) -> Running:
    """Network, one API container and the proxy, as the Pulumi stack runs them, serving GET /."""
    stack.create_network()
    api = stack.start_api()
    proxy = stack.start_proxy()
    return Running(stack, api, proxy).serving("a fresh stack")
