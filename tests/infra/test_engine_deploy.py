"""The program itself, deployed on the real Docker engine through the engine-backed mocks,
smoke-tested, redeployed without change, and removed; also two stacks side by side."""

import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest

import contract
from engine_harness.__main__ import remove_labelled
from engine_harness.docker_mocks import EngineMocks, Summary, UnappliedInputError, destroy
from engine_harness.program import REPO_ROOT, run_program, stack_config
from tests.infra.conftest import PROJECT, full_config

pytestmark = pytest.mark.engine


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class EngineStack:
    name: str
    state_file: Path
    config: dict[str, str]
    exports: dict[str, Any]
    summary: Summary


Up = Callable[[str], EngineStack]


@pytest.fixture
def engine_up(
    docker_client: docker.DockerClient, base_images: dict[str, str], tmp_path: Path
) -> Iterator[Up]:
    """up(stack): deploy the dev stack's config under a unique stack name on a free port.
    Everything deployed is removed afterwards, also when the test failed."""
    deployed: list[EngineStack] = []

    def up(stack: str) -> EngineStack:
        earlier = [record.config for record in deployed if record.name == stack]
        config = (
            earlier[0]
            if earlier
            else {
                **stack_config("dev"),
                **full_config(
                    {
                        "proxyPort": str(free_port()),
                        "apiBaseImage": base_images["api"],
                        "proxyBaseImage": base_images["proxy"],
                    }
                ),
            }
        )
        state_file = tmp_path / f"{stack}.json"
        mocks = EngineMocks(docker_client, state_file)
        record = EngineStack(stack, state_file, config, {}, Summary())
        deployed.append(record)
        record.exports = run_program(mocks, stack, config)
        record.summary = mocks.finish()
        return record

    try:
        yield up
    finally:
        for record in reversed(deployed):
            destroy(docker_client, record.state_file)
            remove_labelled(docker_client, PROJECT, record.name)


def stack_objects(client: docker.DockerClient, stack: str) -> list[str]:
    labels = [f"{contract.LABEL_PROJECT}={PROJECT}", f"{contract.LABEL_STACK}={stack}"]
    containers = client.containers.list(all=True, filters={"label": labels})
    networks = client.networks.list(filters={"label": labels})
    return [c.name for c in containers] + [n.name for n in networks]


def smoke(url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "smoke_test.py"), url, "--wait", "30"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_deploy_smoke_redeploy_and_destroy(
    engine_up: Up, docker_client: docker.DockerClient, unique_name: str
) -> None:
    stack = engine_up(unique_name)
    assert len(stack.summary.created) == 6, stack.summary

    result = smoke(stack.exports[contract.EXPORT_URL])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 passed, 0 failed" in result.stdout, result.stdout

    # What runs is what the program declared.
    proxy = docker_client.containers.get(stack.exports[contract.EXPORT_PROXY_CONTAINER])
    host_config = proxy.attrs["HostConfig"]
    bindings = host_config["PortBindings"][f"{contract.PROXY_CONTAINER_PORT}/tcp"]
    assert [b["HostIp"] for b in bindings] == ["127.0.0.1"]
    assert proxy.attrs["Config"]["User"] == contract.PROXY_USER
    for name in stack.exports[contract.EXPORT_API_CONTAINERS]:
        api = docker_client.containers.get(name)
        assert api.attrs["HostConfig"]["ReadonlyRootfs"] is True, name
        assert api.attrs["HostConfig"]["CapDrop"] == ["ALL"], name
        assert not api.attrs["HostConfig"]["PortBindings"], f"{name} publishes a port"
        endpoint = api.attrs["NetworkSettings"]["Networks"][stack.exports[contract.EXPORT_NETWORK]]
        assert contract.API_ALIAS in endpoint["Aliases"], name
        assert api.attrs["State"]["Health"]["Status"] == "healthy", name
        assert api.image.id == stack.exports[contract.EXPORT_API_IMAGE], name

    # A second run with nothing changed changes nothing.
    again = engine_up(unique_name)
    assert not again.summary.created and not again.summary.replaced, again.summary
    assert len(again.summary.unchanged) == 6, again.summary

    # Destroy removes every container and network of the stack.
    destroy(docker_client, stack.state_file)
    assert stack_objects(docker_client, unique_name) == []


def test_two_stacks_run_side_by_side(
    engine_up: Up, docker_client: docker.DockerClient, unique_name: str
) -> None:
    first, second = engine_up(f"{unique_name}a"), engine_up(f"{unique_name}b")
    for stack in (first, second):
        result = smoke(stack.exports[contract.EXPORT_URL])
        assert result.returncode == 0, f"{stack.name}: {result.stdout}{result.stderr}"
    destroy(docker_client, first.state_file)
    assert stack_objects(docker_client, first.name) == []
    assert smoke(second.exports[contract.EXPORT_URL]).returncode == 0, "removing one broke two"


def test_an_input_the_harness_cannot_apply_is_refused(
    docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    mocks = EngineMocks(docker_client, tmp_path / "state.json")

    class Args:
        typ = "docker:index/container:Container"
        name = "refused"
        inputs = {"name": "refused", "image": "x", "privileged": True}

    with pytest.raises(UnappliedInputError, match="privileged"):
        mocks.new_resource(Args())  # type: ignore[arg-type]
    assert docker_client.containers.list(all=True, filters={"name": "refused"}) == []
