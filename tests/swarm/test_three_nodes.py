"""The stack on a three-node swarm (tests/swarm/cluster.py), deployed through `docker:host` (the
manager's TLS API) with its images pushed to a registry and pulled by every node: API tasks on
more than one node, a request stream that outlives a worker node, and a destroy that leaves the
nodes clean."""

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

import contract
from engine_harness.request_stream import RequestStream, Tally
from tests.engine_stacks import PROJECT, Deployments, EngineStack, smoke
from tests.rolling.test_redeploys import AFTER, Record, assert_none_failed
from tests.swarm.cluster import REGISTRY, Cluster, three_node_swarm

pytestmark = pytest.mark.engine

API_REPLICAS = 3
# How long the swarm may take to notice a stopped node and run its tasks elsewhere.
RESCHEDULE_SECONDS = 90
# The stream's clients: kept alive, and one opening a new connection per request.
KEPT_ALIVE, FRESH = 3, 1
# A node that dies at once (power lost, a kernel panic: its container killed) takes with it the
# requests the proxy has just sent to its tasks: nothing answers or refuses them, so they wait
# for the proxy's read timeout (35 s, above gunicorn's worker timeout, so that no slow request
# is cut short), and the client gives up first. Each client has at most one such request, sent
# in the moment the node died; every request after that is answered.
LOST_WITHIN_SECONDS = 1.0


@pytest.fixture(scope="module")
def cluster(
    docker_client: docker.DockerClient, base_images: dict[str, str]
) -> Iterator[tuple[Cluster, float]]:
    started = time.monotonic()
    with three_node_swarm(docker_client, base_images, f"t{uuid.uuid4().hex[:10]}") as made:
        yield made, time.monotonic() - started


@pytest.fixture
def deployments(
    cluster: tuple[Cluster, float],
    docker_client: docker.DockerClient,
    base_images: dict[str, str],
    tmp_path: Path,
) -> Iterator[Deployments]:
    swarm, _ = cluster
    deployments = Deployments(
        swarm.manager,
        base_images,
        tmp_path,
        # The overlay's subnet must not overlap the nodes' own network, which is this engine's.
        subnets_of=docker_client,
        stack_file="swarm",
        provider=swarm.provider,
        provider_secrets=swarm.secret_keys,
    )
    try:
        yield deployments
    finally:
        deployments.close()


def deploy(deployments: Deployments, swarm: Cluster) -> EngineStack:
    return deployments.up(
        f"n{uuid.uuid4().hex[:8]}",
        proxyPort=str(swarm.proxy_port),
        imageRegistry=REGISTRY,
        apiReplicas=str(API_REPLICAS),
        proxyConstraints="node.role==manager",
    )


def task_nodes(manager: docker.DockerClient, service: str) -> list[str]:
    """The nodes (hostnames) of the service's running tasks."""
    names = {node.id: node.attrs["Description"]["Hostname"] for node in manager.nodes.list()}
    tasks = manager.api.tasks(filters={"service": service, "desired-state": "running"})
    return [names[t["NodeID"]] for t in tasks if t["Status"]["State"] == "running"]


def test_deploys_through_the_managers_tls_api_with_images_from_the_registry(
    cluster: tuple[Cluster, float], deployments: Deployments, record_property: Record
) -> None:
    swarm, took = cluster
    record_property("figure", f"three-node swarm and registry ready in {took:.1f} s")
    started = time.monotonic()
    stack = deploy(deployments, swarm)
    record_property("figure", f"first deploy {time.monotonic() - started:.1f} s")

    done = smoke(stack)
    assert done.returncode == 0, done.stdout + done.stderr
    for export in (contract.EXPORT_API_IMAGE, contract.EXPORT_PROXY_IMAGE):
        assert str(stack.exports[export]).startswith(f"{REGISTRY}/"), stack.exports[export]
        assert "@sha256:" in str(stack.exports[export])
    nodes = task_nodes(swarm.manager, stack.exports[contract.EXPORT_API_SERVICE])
    assert len(nodes) == API_REPLICAS and len(set(nodes)) > 1, nodes
    assert task_nodes(swarm.manager, stack.exports[contract.EXPORT_PROXY_SERVICE]) == ["node1"]


def test_a_stream_of_requests_outlives_a_worker_node(
    cluster: tuple[Cluster, float], deployments: Deployments, record_property: Record
) -> None:
    swarm, _ = cluster
    stack = deploy(deployments, swarm)
    api = stack.exports[contract.EXPORT_API_SERVICE]
    worker = next(n for n in task_nodes(swarm.manager, api) if n != "node1")
    node = next(n for n in swarm.nodes if n.attrs["Config"]["Hostname"] == worker)

    with RequestStream(stack.url, kept_alive=KEPT_ALIVE, fresh=FRESH) as stream:
        stopped = time.monotonic()
        node.stop(timeout=0)
        deadline = stopped + RESCHEDULE_SECONDS
        while (
            worker in (nodes := task_nodes(swarm.manager, api)) or len(nodes) < API_REPLICAS
        ) and time.monotonic() < deadline:
            time.sleep(1)
        rescheduled = time.monotonic() - stopped
        stream.wait_for_successes(len(stream.tally.results) + AFTER)
    record_property(
        "figure",
        f"{worker} stopped: its tasks ran elsewhere after {rescheduled:.1f} s;"
        f" {stream.tally.summary()}",
    )
    assert worker not in nodes and len(nodes) == API_REPLICAS, nodes
    lost = [r for r in stream.tally.failed if r.at < stopped + LOST_WITHIN_SECONDS]
    assert len(lost) <= KEPT_ALIVE + FRESH, f"more lost than there are clients: {lost}"
    after = Tally([r for r in stream.tally.results if r.at >= stopped + LOST_WITHIN_SECONDS])
    assert_none_failed(after, f"{worker} stopped, after its first {LOST_WITHIN_SECONDS} s")
    node.start()  # back for the next test (its old tasks are shut down by the manager)


def test_destroy_leaves_every_node_clean(
    cluster: tuple[Cluster, float], deployments: Deployments
) -> None:
    swarm, _ = cluster
    stack = deploy(deployments, swarm)
    label = f"{contract.LABEL_STACK}={stack.name}"
    deployments.close()

    deadline = time.monotonic() + 60  # the workers remove their task containers on their own
    for node in swarm.nodes:
        node.reload()
    while True:
        left = {
            node.name: swarm.engine(index).docker("ps", "-aq", "--filter", f"label={label}").split()
            for index, node in enumerate(swarm.nodes)
            if node.status == "running"
        }
        if not any(left.values()) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert not any(left.values()), left
    manager = swarm.manager
    assert not manager.services.list(filters={"label": label})
    assert not manager.secrets.list(filters={"label": label})
    assert not manager.networks.list(filters={"label": label})
    assert f"{PROJECT}-{stack.name}" not in str(manager.networks.list())
