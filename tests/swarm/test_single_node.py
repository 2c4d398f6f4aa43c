"""The stack on a one-node swarm (the test engine): deployed and smoke-tested, hardened as far as
Swarm allows, rolled to a new release under a stream of requests with none failed, a broken
release rolled back by Swarm itself, scaled, and destroyed leaving exactly what isn't its."""

import time
import uuid
from typing import Any

import docker
import pytest

import contract
from engine_harness.request_stream import RequestStream
from instance_specs import stack_users
from tests.engine_stacks import PROJECT, Deployments, smoke, stack_objects
from tests.rolling.conftest import Checkout
from tests.rolling.test_redeploys import (
    AFTER,
    CANNOT_START,
    ROUTES,
    Record,
    assert_none_failed,
    code_change,
    deployed,
)

pytestmark = pytest.mark.engine


def service(client: docker.DockerClient, name: str) -> dict[str, Any]:
    return dict(client.services.get(name).attrs)


def running_tasks(client: docker.DockerClient, name: str) -> list[dict[str, Any]]:
    tasks = client.api.tasks(filters={"service": name, "desired-state": "running"})
    return [task for task in tasks if task["Status"]["State"] == "running"]


def api_image(client: docker.DockerClient, name: str) -> str:
    return str(service(client, name)["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"])


def test_deploys_serves_and_is_hardened_as_far_as_swarm_allows(
    swarm_deployments: Deployments,
) -> None:
    # IPsec on the overlay: on one node nothing crosses it, but the network is made and kept.
    stack = swarm_deployments.up(f"s{uuid.uuid4().hex[:8]}", overlayEncrypted="true")
    done = smoke(stack)
    assert done.returncode == 0, done.stdout + done.stderr
    client = swarm_deployments.client
    network = client.networks.get(stack.exports[contract.EXPORT_NETWORK])
    assert network.attrs["Options"].get("encrypted") == "true"
    api, proxy = stack.exports[contract.EXPORT_API_SERVICE], stack.exports["proxyService"]
    assert len(running_tasks(client, api)) == 2
    assert len(running_tasks(client, proxy)) == 1
    users = stack_users(f"{PROJECT}-{stack.name}")
    for name, user in ((api, users.api), (proxy, users.proxy)):
        spec = service(client, name)["Spec"]
        container = spec["TaskTemplate"]["ContainerSpec"]
        assert container["User"] == user and container["ReadOnly"] is True, name
        assert container["CapabilityDrop"] == ["ALL"], name
        assert [m["Type"] for m in container["Mounts"]] == ["tmpfs"], name
        limits = spec["TaskTemplate"]["Resources"]
        assert limits["Limits"]["MemoryBytes"] == limits["Reservations"]["MemoryBytes"] > 0
    assert service(client, api)["Spec"]["EndpointSpec"]["Mode"] == "dnsrr"
    ports = service(client, proxy)["Spec"]["EndpointSpec"]["Ports"]
    assert [p["PublishMode"] for p in ports] == ["host"]

    # The key is a Docker secret, readable by the proxy's user alone, never in an environment.
    proxy_spec = service(client, proxy)["Spec"]["TaskTemplate"]["ContainerSpec"]
    assert not any("PRIVATE KEY" in value for value in proxy_spec["Env"])
    key_file = {s["File"]["Name"]: s["File"] for s in proxy_spec["Secrets"]}["tls-private-key.pem"]
    uid, gid = users.proxy.split(":")
    assert (key_file["UID"], key_file["GID"], key_file["Mode"]) == (uid, gid, 0o400)
    task_status = running_tasks(client, proxy)[0]["Status"]
    task = client.containers.get(task_status["ContainerStatus"]["ContainerID"])
    listing = task.exec_run(["sh", "-c", "ls -ln /run/secrets; cat /proc/1/environ"]).output
    assert f"-r-------- 1 {uid} {gid}".encode() in listing and b"PRIVATE KEY" not in listing
    for name in (api, proxy):  # (as root, to see every directory)
        status = running_tasks(client, name)[0]["Status"]
        container = client.containers.get(status["ContainerStatus"]["ContainerID"])
        found = container.exec_run(["find", "/", "-xdev", "-perm", "/6000", "-type", "f"], user="0")
        assert found.output == b"", f"setuid or setgid programs in {name}: {found.output!r}"

    # The next `up` with nothing changed changes nothing, and the engine reads back as declared.
    again = swarm_deployments.up(stack.name)
    assert not again.summary.created and not again.summary.updated and not again.summary.replaced
    assert again.drift == {}


def test_a_release_rolls_out_and_scaling_follows_failing_no_request(
    swarm_checkout: Checkout, record_property: Record
) -> None:
    """A new release replaces every task, one at a time; then 2 -> 3 -> 1 tasks, in place:
    all under one stream of requests, none failed."""
    client, api = swarm_checkout.client, f"{swarm_checkout.prefix}-api"
    url = deployed(swarm_checkout).url
    before = api_image(client, api)
    old = {task["ID"] for task in running_tasks(client, api)}
    swarm_checkout.edit(ROUTES, code_change())

    with RequestStream(url) as stream:
        released = deployed(swarm_checkout)
        assert api_image(client, api) != before
        replaced = running_tasks(client, api)
        for replicas in (3, 1):
            deployed(swarm_checkout, apiReplicas=str(replicas))
            assert len(running_tasks(client, api)) == replicas
        stream.wait_for_successes(len(stream.tally.results) + AFTER)
    record_property(
        "figure", f"release {released.seconds:.1f} s, then 3 and 1 tasks: {stream.tally.summary()}"
    )
    assert_none_failed(stream.tally, "a release rolled out by Swarm, then scaling")
    assert len(replaced) == 2 and not old & {task["ID"] for task in replaced}


def test_a_broken_release_is_rolled_back_by_swarm(
    swarm_checkout: Checkout, record_property: Record
) -> None:
    url, api = deployed(swarm_checkout).url, f"{swarm_checkout.prefix}-api"
    serving = api_image(swarm_checkout.client, api)
    swarm_checkout.edit(ROUTES, f'raise RuntimeError("{CANNOT_START}")\n')

    with RequestStream(url) as stream:
        broken = swarm_checkout.up()
        stream.wait_for_successes(len(stream.tally.results) + AFTER)
    record_property(
        "figure", f"broken release rolled back in {broken.seconds:.1f} s; {stream.tally.summary()}"
    )

    assert broken.returncode != 0
    for said in ("Swarm rolled the update back", "unhealthy container", CANNOT_START):
        assert said in broken.stderr, f"{said!r} not in:\n{broken.stderr}"
    assert_none_failed(stream.tally, "a broken release, rolled back")
    assert api_image(swarm_checkout.client, api) == serving
    assert len(running_tasks(swarm_checkout.client, api)) == 2

    swarm_checkout.restore(ROUTES)
    swarm_checkout.edit(ROUTES, code_change())
    deployed(swarm_checkout)
    assert api_image(swarm_checkout.client, api) != serving


def test_destroy_removes_the_stack_and_nothing_else(swarm_deployments: Deployments) -> None:
    kept, gone = (swarm_deployments.up(f"s{uuid.uuid4().hex[:8]}") for _ in range(2))
    client = swarm_deployments.client
    kept_objects = sorted(stack_objects(client, kept.name))
    assert len(stack_objects(client, gone.name)) >= 5, "2 services, 2 secrets, a network"

    destroyed = Deployments(client, swarm_deployments.base_images, swarm_deployments.state_dir)
    destroyed.stacks = [s for s in swarm_deployments.stacks if s.name == gone.name]
    destroyed.close()

    deadline = time.monotonic() + 30  # Swarm removes the tasks' containers after the service
    while stack_objects(client, gone.name) and time.monotonic() < deadline:
        time.sleep(1)
    assert stack_objects(client, gone.name) == []
    assert sorted(stack_objects(client, kept.name)) == kept_objects
    assert smoke(kept).returncode == 0
