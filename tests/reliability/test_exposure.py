"""Exposure: every running container of a deployed stack passes the CIS-style runtime check,
and the check does catch containers that break its rules."""

import contextlib
import copy
from typing import cast

import docker
import docker.errors
import pytest
from docker.models.containers import Container

import contract
from tests.conftest import TEST_LABEL
from tests.engine_stacks import EngineStack
from tests.reliability.exposure import violations
from tests.reliability.helpers import stack_containers

pytestmark = pytest.mark.engine


def test_every_running_container_of_the_stack_passes(
    stack: EngineStack, docker_client: docker.DockerClient
) -> None:
    running = [c for c in stack_containers(docker_client, stack) if c.status == "running"]
    assert len(running) == stack.settings.api_replicas + 1, [c.name for c in running]
    found = {str(c.name): violations(c, stack.settings) for c in running}
    lines = [f"  {name}: {problem}" for name, problems in found.items() for problem in problems]
    assert not lines, "exposure violations:\n" + "\n".join(lines)


class Privileged:
    """A container's inspection with `Privileged` set (no privileged container can be started
    here): the rest behaves as the container does."""

    def __init__(self, container: Container) -> None:
        container.reload()
        self.container, self.name, self.labels = container, container.name, container.labels
        self.attrs = copy.deepcopy(container.attrs)
        self.attrs["HostConfig"]["Privileged"] = True

    def reload(self) -> None:
        pass

    def top(self, **options: str) -> dict:
        return dict(self.container.top(**options))


def test_the_check_catches_careless_containers(
    stack: EngineStack,
    docker_client: docker.DockerClient,
    base_images: dict[str, str],
    unique_name: str,
) -> None:
    role = contract.LABEL_ROLE
    careless = {
        # Root, writable, a capability added, the host's PIDs, the docker socket, no limits,
        # no health check, the API port published.
        f"{unique_name}-api": dict(
            image=base_images["api"],
            labels={role: contract.ROLE_API, TEST_LABEL: "1"},
            cap_add=["NET_ADMIN"],
            pid_mode="host",
            ports={f"{contract.API_PORT}/tcp": ("127.0.0.1", None)},
            volumes={"/var/run/docker.sock": {"bind": "/var/run/docker.sock", "mode": "ro"}},
        ),
        # The host's network, so not published on the configured address.
        f"{unique_name}-proxy": dict(
            image=base_images["proxy"],
            labels={role: contract.ROLE_PROXY, TEST_LABEL: "1"},
            network_mode="host",
        ),
    }
    expected = {
        f"{unique_name}-api": [
            "runs as root",
            "root filesystem is writable",
            "capabilities added",
            "not all capabilities dropped",
            "no-new-privileges not set",
            "memory limit",
            "no process limit",
            "PidMode=host",
            "docker socket mounted",
            "no health check",
            "API ports published",
            "runs as uid 0",
            "has effective capabilities",
            "may gain privileges",
        ],
        f"{unique_name}-proxy": ["NetworkMode=host", "published {}, not only"],
    }
    try:
        for name, options in careless.items():
            docker_client.containers.run(
                command=["sleep", "600"], name=name, detach=True, **options
            )
        for name, problems in expected.items():
            found = "\n".join(violations(docker_client.containers.get(name), stack.settings))
            missed = [problem for problem in problems if problem not in found]
            assert not missed, f"{name}: missed {missed}; found:\n{found}"
        privileged = Privileged(docker_client.containers.get(f"{unique_name}-proxy"))
        assert "privileged" in violations(cast(Container, privileged), stack.settings)
    finally:
        for name in careless:
            with contextlib.suppress(docker.errors.NotFound):
                docker_client.containers.get(name).remove(force=True)
