"""Shared fixtures: the Docker engine, the offline base images, and a check that tests leave
nothing of theirs behind."""

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
# Every Docker object a test creates carries this label, so leftovers can be found.
TEST_LABEL = "pulumi-flask-rebar.test"


def _base_images() -> dict[str, str]:
    """API_BASE_IMAGE / PROXY_BASE_IMAGE: the environment's, else base-images/images.env."""
    names: dict[str, str] = {}
    for line in (REPO_ROOT / "base-images" / "images.env").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            names[key.strip()] = os.environ.get(key.strip(), value.strip())
    return names


BASE_IMAGES = _base_images()


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    """A client of a running Docker engine. Under CI=true a missing engine fails the test
    (CI must never pass having tested nothing); elsewhere the test is skipped with the reason."""
    try:
        client = docker.from_env(timeout=300)
        client.ping()
    except docker.errors.DockerException as error:
        message = f"no Docker engine answers ({error}); start one (see README: Prerequisites)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    yield client
    client.close()


@pytest.fixture(scope="session")
def base_images(docker_client: docker.DockerClient) -> dict[str, str]:
    """The base images the Dockerfiles are built on here: the offline ones must exist."""
    for name in BASE_IMAGES.values():
        try:
            docker_client.images.get(name)
        except docker.errors.ImageNotFound:
            pytest.fail(f"base image {name} is missing: run `make base-images` first")
    return {"api": BASE_IMAGES["API_BASE_IMAGE"], "proxy": BASE_IMAGES["PROXY_BASE_IMAGE"]}


@pytest.fixture
def unique_name() -> str:
    """A name no other test run uses, for Docker objects of one test."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture(autouse=True)
def nothing_left_behind(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each engine test, no container or network labelled as a test's may remain."""
    yield
    if request.node.get_closest_marker("engine") is None:
        return
    client = request.getfixturevalue("docker_client")
    containers = client.containers.list(all=True, filters={"label": TEST_LABEL})
    networks = client.networks.list(filters={"label": TEST_LABEL})
    left = [c.name for c in containers] + [n.name for n in networks]
    assert not left, f"test left Docker objects behind: {left}"
