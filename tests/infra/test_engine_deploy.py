"""The program itself, deployed on the real Docker engine through the engine-backed mocks,
smoke-tested, redeployed without change, and removed; also two stacks side by side."""

from pathlib import Path

import docker
import docker.types
import pulumi
import pytest

import contract
from engine_harness.docker_mocks import DeployError, EngineMocks, UnappliedInputError, destroy
from engine_harness.free_resources import free_subnet
from engine_harness.provider_rules import CONTAINER
from instance_specs import stack_users
from tests.conftest import TEST_LABEL, Up
from tests.engine_stacks import DEV_RESOURCES, PROJECT, new_stack_name, smoke, stack_objects

pytestmark = pytest.mark.engine


def test_deploy_smoke_redeploy_and_destroy(
    engine_up: Up, docker_client: docker.DockerClient, unique_name: str
) -> None:
    stack = engine_up(unique_name)
    assert len(stack.summary.created) == DEV_RESOURCES, stack.summary

    result = smoke(stack)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 passed, 0 failed" in result.stdout, result.stdout

    # What runs is what the program declared.
    proxy = docker_client.containers.get(stack.exports[contract.EXPORT_PROXY_CONTAINER])
    host_config = proxy.attrs["HostConfig"]
    bindings = host_config["PortBindings"][f"{contract.PROXY_HTTPS_PORT}/tcp"]
    assert [b["HostIp"] for b in bindings] == ["127.0.0.1"]
    assert proxy.attrs["Config"]["User"] == stack_users(f"{PROJECT}-{unique_name}").proxy
    assert host_config["Sysctls"] == {"net.ipv4.tcp_tw_reuse": "1"}
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
    assert len(again.summary.unchanged) == DEV_RESOURCES, again.summary

    # Destroy removes every container and network of the stack.
    destroy(docker_client, stack.state_file)
    assert stack_objects(docker_client, unique_name) == []


def test_two_stacks_run_side_by_side(
    engine_up: Up, docker_client: docker.DockerClient, unique_name: str
) -> None:
    first, second = engine_up(f"{unique_name}a"), engine_up(f"{unique_name}b")
    for stack in (first, second):
        result = smoke(stack)
        assert result.returncode == 0, f"{stack.name}: {result.stdout}{result.stderr}"
    destroy(docker_client, first.state_file)
    assert stack_objects(docker_client, first.name) == []
    assert smoke(second).returncode == 0, "removing one broke two"


def test_a_subnet_in_use_fails_the_deploy_naming_it_and_creates_no_container(
    engine_up: Up, docker_client: docker.DockerClient, unique_name: str
) -> None:
    subnet = free_subnet(docker_client)
    pool = docker.types.IPAMPool(subnet=subnet)
    taken = docker_client.networks.create(
        f"{unique_name}-taken",
        ipam=docker.types.IPAMConfig(pool_configs=[pool]),
        labels={TEST_LABEL: "1"},
    )
    try:
        # Docker's words vary with its version and the declared gateway: "Pool overlaps with
        # other one", "networks have overlapping IPv4", "Address already in use".
        with pytest.raises(DeployError, match=r"overlap|already in use") as raised:
            engine_up(unique_name, networkSubnet=subnet)
        network = f"{PROJECT}-{unique_name}-network"
        assert f"{network}' (subnet {subnet})" in str(raised.value), raised.value
        assert stack_objects(docker_client, unique_name) == []
    finally:
        taken.remove()


def test_an_input_the_harness_cannot_apply_is_refused(
    docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    mocks = EngineMocks(docker_client, tmp_path / "state.json")

    inputs = {"name": "refused", "image": "x", "privileged": True}

    with pytest.raises(UnappliedInputError, match="privileged"):
        mocks.new_resource(pulumi.runtime.MockResourceArgs(CONTAINER, "refused", inputs))
    assert docker_client.containers.list(all=True, filters={"name": "refused"}) == []


def test_a_pypy_stack_deploys_and_passes_the_smoke_test(
    engine_up: Up, docker_client: docker.DockerClient, base_images: dict[str, str]
) -> None:
    stack = engine_up(
        new_stack_name(), apiRuntime="pypy", apiMemoryMb="768", apiBaseImage=base_images["pypy"]
    )
    result = smoke(stack)
    assert result.returncode == 0, result.stdout + result.stderr
    for name in stack.exports[contract.EXPORT_API_CONTAINERS]:
        check = ["python", "-c", "import platform; print(platform.python_implementation())"]
        output = docker_client.containers.get(name).exec_run(check).output.decode().strip()
        assert output == "PyPy", name
