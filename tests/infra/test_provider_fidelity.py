"""What a real `pulumi up` does after the first, on the real engine: the state holds what the
provider reads back, so a deploy must read back exactly as declared, or every later `up`
replaces something; images are built as the provider builds them; a change the provider
updates in place is applied (or refused) as it applies it. docs/provider-fidelity.md has the
rules and their sources."""

import io
from pathlib import Path
from typing import Any

import docker
import pulumi
import pytest

import contract
from engine_harness.docker_mocks import DeployError, EngineMocks, Options
from engine_harness.provider_rules import CONTAINER
from tests.conftest import TEST_LABEL, Up
from tests.engine_stacks import DEV_RESOURCES, PROJECT, smoke

pytestmark = pytest.mark.engine


@pytest.mark.parametrize(
    "config",
    [
        {},
        # IPv6, spelled out: declared as Docker reports it (::1), so read back the same.
        {"proxyBindAddress": "0:0:0:0:0:0:0:1"},
    ],
    ids=["dev", "ipv6-longhand"],
)
def test_a_deploy_reads_back_as_declared_and_the_next_up_plans_nothing(
    engine_up: Up, docker_client: docker.DockerClient, unique_name: str, config: dict[str, str]
) -> None:
    first = engine_up(unique_name, **config)
    assert first.drift == {}, f"read back differently from the declaration: {first.drift}"
    assert smoke(first).returncode == 0
    # Built as pulumi-docker builds by default: with BuildKit (provider/image.go).
    for export in (contract.EXPORT_API_IMAGE, contract.EXPORT_PROXY_IMAGE):
        history = docker_client.images.get(first.exports[export]).history()
        assert any(layer.get("Comment") == "buildkit.dockerfile.v0" for layer in history), export

    again = engine_up(unique_name)

    assert sorted(again.summary.unchanged) == sorted(first.summary.created), again.summary
    assert again.drift == {}


def test_an_object_removed_by_hand_is_missing_until_up_refresh(
    engine_up: Up,
    fresh_deployments: Any,
    docker_client: docker.DockerClient,
    unique_name: str,
) -> None:
    """`pulumi up` trusts its state; `pulumi up --refresh` reads the engine first."""
    first = engine_up(unique_name)
    proxy = first.exports[contract.EXPORT_PROXY_CONTAINER]
    docker_client.containers.get(proxy).remove(force=True)

    stale = engine_up(unique_name)
    assert len(stale.summary.unchanged) == DEV_RESOURCES, stale.summary
    assert not docker_client.containers.list(all=True, filters={"name": f"^{proxy}$"})

    refreshed = fresh_deployments.up_refreshed(unique_name)
    assert refreshed.summary.created == [f"{PROJECT}-{unique_name}-proxy"], refreshed.summary
    assert refreshed.drift == {}
    assert smoke(refreshed).returncode == 0


def test_a_new_base_image_under_the_same_name_rebuilds_and_replaces(
    engine_up: Up,
    docker_client: docker.DockerClient,
    base_images: dict[str, str],
    unique_name: str,
) -> None:
    """pulumi-docker compares the build's files and arguments, not the base image: the
    program passes the base's engine id, so a rebuilt base is a new build."""
    base = f"{unique_name}-base:1"
    docker_client.images.get(base_images["proxy"]).tag(base)
    try:
        first = engine_up(unique_name, proxyBaseImage=base)
        proxy_image = first.exports[contract.EXPORT_PROXY_IMAGE]
        # The base rebuilt under the same name (as `base-images/build.sh --rebuild` does).
        rebuilt = f"FROM {base_images['proxy']}\nLABEL rebuilt={unique_name}\n"
        docker_client.images.build(fileobj=io.BytesIO(rebuilt.encode()), tag=base, rm=True)

        again = engine_up(unique_name)

        assert again.exports[contract.EXPORT_PROXY_IMAGE] != proxy_image
        assert f"{PROJECT}-{unique_name}-proxy" in again.summary.replaced, again.summary
        assert again.drift == {}
    finally:
        docker_client.images.remove(base, force=True)


def in_place(
    client: docker.DockerClient, state: Path, name: str, inputs: dict[str, Any]
) -> EngineMocks:
    """Register one container as a program without replace_on_changes would."""
    mocks = EngineMocks(client, state)
    mocks.options[name] = Options()
    mocks.new_resource(pulumi.runtime.MockResourceArgs(CONTAINER, name, inputs))
    return mocks


# Memory is updated in place, without the swap unless the program declares it; dockerd refuses
# more memory than the swap limit it set at creation (twice the memory, where the kernel
# accounts swap). tmpfs is neither replaced nor updated: a new value reaches the state alone.
IN_PLACE: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "memory-raise-without-swap": ({"memory": 64}, {"memory": 256}),
    "memory-raise-with-swap": (
        {"memory": 64, "memorySwap": 64},
        {"memory": 256, "memorySwap": 256},
    ),
    "tmpfs": ({"tmpfs": {"/tmp": "size=1m"}}, {"tmpfs": {"/tmp": "size=2m"}}),
}


@pytest.mark.parametrize("case", IN_PLACE)
def test_changes_the_provider_updates_in_place(
    docker_client: docker.DockerClient,
    base_images: dict[str, str],
    unique_name: str,
    tmp_path: Path,
    case: str,
) -> None:
    """As pulumi-docker applies a change it doesn't replace for (resourceDockerContainerUpdate:
    ContainerUpdate of the memory, swap and restart policy only), on the same container."""
    before, after = IN_PLACE[case]
    common: dict[str, Any] = {"name": unique_name, "image": base_images["api"]}
    common["labels"] = [{"label": TEST_LABEL, "value": "1"}]
    state = tmp_path / "state.json"
    in_place(docker_client, state, "c", common | before)
    container = docker_client.containers.get(unique_name)
    refused = case == "memory-raise-without-swap" and docker_client.info().get("SwapLimit")
    try:
        if refused:
            with pytest.raises(DeployError, match="Memory limit should be smaller"):
                in_place(docker_client, state, "c", common | after)
            return
        mocks = in_place(docker_client, state, "c", common | after)
        now = docker_client.containers.get(unique_name)
        assert now.id == container.id, "replaced, not updated"
        if case == "tmpfs":
            assert now.attrs["HostConfig"]["Tmpfs"] == before["tmpfs"]
            assert mocks.drift() == {"c": {"tmpfs": (before["tmpfs"], after["tmpfs"])}}
        else:
            assert now.attrs["HostConfig"]["Memory"] == 256 * 1024 * 1024
    finally:
        container.remove(force=True)
