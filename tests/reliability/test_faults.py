"""Faults: crashed, stopped and replaced containers, a deploy failing half-way, and what destroy
may remove. The crash is SIGKILL to a container's main process from the host (`docker kill`
would count as a manual stop, which restart policies ignore)."""

import contextlib
import os
import signal
import time
from datetime import UTC, datetime
from pathlib import Path

import docker
import docker.errors
import pytest
import requests
from docker.models.containers import Container

import contract
from engine_harness.__main__ import remove_labelled
from engine_harness.docker_mocks import DeployError, destroy, load_state
from tests.conftest import TEST_LABEL, Up
from tests.engine_stacks import PROJECT, Deployments, EngineStack, smoke, stack_objects
from tests.reliability.helpers import (
    REQUEST_TIMEOUT,
    RequestStream,
    api_containers,
    assert_healthy,
    assert_proxy_error,
    eventually,
    lifetimes,
    proxied_requests,
    proxy_access_log,
    proxy_container,
    tag_image,
)

pytestmark = pytest.mark.engine

# A dead address costs the proxy one connect timeout (250 ms, proxy/nginx.conf) before it tries
# another instance: no failed attempt may take much longer, and no request more than a few.
FAILED_ATTEMPT_BOUND = 2.0
REQUEST_BOUND = 5.0
# Restart, health check start period and first passing check of a crashed container.
RECOVERY = 60.0
# The label of every Docker object a test makes itself (tests/conftest.py checks none is left).
MINE = {TEST_LABEL: "1"}


def crash(container: Container) -> None:
    """SIGKILL the container's main process, as a crash would."""
    container.reload()
    os.kill(int(container.attrs["State"]["Pid"]), signal.SIGKILL)


def started_at(container: Container) -> float:
    """State.StartedAt (RFC 3339 with nanoseconds) as a Unix time."""
    whole, _, fraction = container.attrs["State"]["StartedAt"].rstrip("Z").partition(".")
    start = datetime.fromisoformat(whole).replace(tzinfo=UTC).timestamp()
    return start + float(f"0.{fraction or 0}")


def assert_restarted_and_healthy(container: Container, restarts_before: int) -> None:
    assert_healthy(container)
    restarts = container.attrs["RestartCount"]
    assert restarts > restarts_before, f"{container.name}: restart count still {restarts}"


def assert_serves(url: str, count: int = 1) -> None:
    for _ in range(count):
        response = requests.get(f"{url}/", timeout=REQUEST_TIMEOUT)
        assert response.status_code == 200, f"HTTP {response.status_code}: {response.text[:200]}"


def failed_attempt_seconds(proxy: Container) -> list[float]:
    """How long each failed upstream attempt took, from the proxy's access log."""
    seconds = []
    for entry in proxy_access_log(proxy):
        statuses = str(entry.get("upstream_status", "")).split(", ")
        times = str(entry.get("upstream_response_time", "")).split(", ")
        for status, took in zip(statuses, times, strict=False):
            if status in {"502", "504"} and took not in {"", "-"}:
                seconds.append(float(took))
    return seconds


def assert_serves_from(stream: RequestStream, moment: float, count: int) -> None:
    served = stream.served_since(moment)
    assert served >= count, f"{served} requests served"


def assert_errors_from(stream: RequestStream, moment: float, count: int) -> None:
    errors = sum(1 for o in list(stream.outcomes) if o.started >= moment and o.result != 200)
    assert errors >= count, f"{errors} errors since"


def assert_served_by(proxy: Container, container: Container, since: float) -> None:
    served = proxied_requests(proxy, container, since)
    assert served > 0, f"{container.name} served no proxied request since it (re)started"


def test_crashed_api_container_goes_unnoticed_and_comes_back(
    stack: EngineStack, docker_client: docker.DockerClient
) -> None:
    replicas = api_containers(docker_client, stack)
    assert len(replicas) == 2, "the default replica count"
    victim = replicas[0]
    restarts_before = lifetimes([victim])[str(victim.name)][1]
    stream = RequestStream(f"{stack.url}/")
    with stream.running():
        eventually(lambda: assert_serves_from(stream, 0.0, 20), 30)
        killed_at = time.monotonic()
        crash(victim)
        eventually(lambda: assert_restarted_and_healthy(victim, restarts_before), RECOVERY)
        back_at = time.monotonic()
        # The proxy sends the restarted container requests again, by itself.
        since = started_at(victim)
        proxy = proxy_container(docker_client, stack)
        eventually(lambda: assert_served_by(proxy, victim, since), 30)
    outage = [o for o in stream.outcomes if killed_at <= o.started < back_at]
    assert outage, "no request was made while the container was down"
    assert not stream.failures, f"failed requests: {stream.failures[:10]}"
    slowest = max(o.seconds for o in stream.outcomes)
    assert slowest < REQUEST_BOUND, f"a request took {slowest:.1f}s"
    attempts = failed_attempt_seconds(proxy_container(docker_client, stack))
    assert max(attempts, default=0.0) <= FAILED_ATTEMPT_BOUND, f"failed attempts took {attempts}"


def test_all_api_containers_stopped_gives_json_errors_then_recovers(
    stack: EngineStack, docker_client: docker.DockerClient
) -> None:
    containers = api_containers(docker_client, stack)
    proxy = proxy_container(docker_client, stack)
    proxy_before = lifetimes([proxy])
    # From before the stop until well after: the moments in between (stopped containers'
    # kept-alive connections and addresses still in the proxy's pool) must be answered like
    # the rest.
    stream = RequestStream(f"{stack.url}/")
    try:
        with stream.running():
            eventually(lambda: assert_serves_from(stream, 0.0, 5), 30)
            for container in containers:
                container.stop(timeout=10)
            stopped_at = time.monotonic()
            eventually(lambda: assert_errors_from(stream, stopped_at, 20), 30)
        response = requests.get(f"{stack.url}/", timeout=REQUEST_TIMEOUT)
        what = "with every API container stopped"
        assert response.status_code in {502, 503}, f"{what}: HTTP {response.status_code}"
        assert_proxy_error(response.status_code, dict(response.headers), response.content, what)
    finally:
        for container in containers:
            container.start()
    errors = [o for o in stream.outcomes if o.result != 200]
    wrong = [o for o in errors if o.result not in {502, 503} or "json" not in o.content_type]
    assert not wrong, f"answers other than a JSON 502/503: {wrong[:10]}"
    slowest = max(o.seconds for o in stream.outcomes)
    assert slowest < REQUEST_BOUND, f"a request took {slowest:.1f}s"
    eventually(lambda: assert_serves(stack.url, 5), RECOVERY)
    assert lifetimes([proxy]) == proxy_before, "the proxy was restarted"


def test_replaced_api_containers_are_followed_without_a_proxy_restart(
    deployments: Deployments,
    stack: EngineStack,
    docker_client: docker.DockerClient,
    base_images: dict[str, str],
) -> None:
    proxy = proxy_container(docker_client, stack)
    proxy_before = lifetimes([proxy])
    old_ids = {c.id for c in api_containers(docker_client, stack)}
    # A new API image, as a release makes: the same base under another name changes the image's
    # base-name label, so the image and then every API container are replaced.
    base = f"{stack.name}/python:rebuilt"
    tag_image(docker_client, base_images["api"], base)
    try:
        updated = deployments.up(stack.name, apiBaseImage=base)
    finally:
        docker_client.images.remove(base)
    deployed_at = time.time()
    assert updated.exports[contract.EXPORT_API_IMAGE] != stack.exports[contract.EXPORT_API_IMAGE]
    # (Only if proxy/ itself changed while this ran would the deploy replace the proxy too.)
    assert f"{PROJECT}-{stack.name}-proxy" in updated.summary.unchanged, updated.summary
    replaced = api_containers(docker_client, updated)
    assert not old_ids & {c.id for c in replaced}, "the API containers were not replaced"

    def assert_all_serve() -> None:
        assert_serves(updated.url, 10)
        for container in replaced:
            assert_served_by(proxy, container, deployed_at)

    eventually(assert_all_serve, 30)
    assert lifetimes([proxy]) == proxy_before, "the proxy was restarted or replaced"


def test_crashed_proxy_comes_back(stack: EngineStack, docker_client: docker.DockerClient) -> None:
    proxy = proxy_container(docker_client, stack)
    restarts_before = lifetimes([proxy])[str(proxy.name)][1]
    crash(proxy)
    eventually(lambda: assert_restarted_and_healthy(proxy, restarts_before), RECOVERY)
    eventually(lambda: assert_serves(stack.url, 5), 30)


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        # The API image fails to build (the proxy's base has no python3): no API container.
        ("api-image-build-error", "build failed"),
        # The proxy can't be created (its name is taken): the API containers already run.
        ("proxy-name-taken", "Conflict"),
    ],
    ids=["api-image-build-error", "proxy-name-taken"],
)
def test_a_deploy_failing_half_way_is_destroyed_or_fixed_cleanly(
    breakage: str,
    expected: str,
    docker_client: docker.DockerClient,
    base_images: dict[str, str],
    unique_name: str,
    fresh_deployments: Deployments,
) -> None:
    broken = {"apiBaseImage": base_images["proxy"]} if breakage == "api-image-build-error" else {}
    squatter: Container | None = None
    try:
        for then in ("destroy", "fix"):
            if breakage == "proxy-name-taken":
                squatter = docker_client.containers.create(
                    base_images["api"],
                    ["sleep", "600"],
                    name=f"{PROJECT}-{unique_name}-proxy",
                    labels=MINE,
                )
            with pytest.raises((DeployError, docker.errors.APIError)) as raised:
                fresh_deployments.up(unique_name, **broken)
            assert expected in str(raised.value), raised.value
            state_file = fresh_deployments.stacks[-1].state_file
            assert_state_knows_everything(docker_client, unique_name, state_file)
            if squatter is not None:
                squatter.remove(force=True)
                squatter = None
            if then == "destroy":
                destroy(docker_client, state_file)
                assert stack_objects(docker_client, unique_name) == []

        fixed = fresh_deployments.up(unique_name, apiBaseImage=base_images["api"])
        result = smoke(fixed)
        assert result.returncode == 0, result.stdout + result.stderr
        assert len(stack_objects(docker_client, unique_name)) == 4, "3 containers and a network"
        destroy(docker_client, fixed.state_file)
        assert stack_objects(docker_client, unique_name) == []
    finally:
        if squatter is not None:
            squatter.remove(force=True)


def test_a_failed_update_leaves_the_stack_serving_and_destroyable(
    docker_client: docker.DockerClient,
    base_images: dict[str, str],
    unique_name: str,
    fresh_deployments: Deployments,
) -> None:
    stack = fresh_deployments.up(unique_name)
    # A release whose API image fails to build, on top of the running stack.
    with pytest.raises(DeployError, match="build failed"):
        fresh_deployments.up(unique_name, apiBaseImage=base_images["proxy"])
    result = smoke(stack)
    assert result.returncode == 0, f"the running stack broke: {result.stdout}{result.stderr}"
    assert_state_knows_everything(docker_client, unique_name, stack.state_file)
    destroy(docker_client, stack.state_file)
    assert stack_objects(docker_client, unique_name) == []


def assert_state_knows_everything(
    client: docker.DockerClient, stack: str, state_file: Path
) -> None:
    """Nothing on the engine labelled as `stack`'s that its state (and so destroy) doesn't
    know of."""
    labels = [f"{contract.LABEL_PROJECT}={PROJECT}", f"{contract.LABEL_STACK}={stack}"]
    found = client.containers.list(all=True, filters={"label": labels})
    found += client.networks.list(filters={"label": labels})
    recorded = {record.id for record in load_state(state_file)}
    unknown = {str(o.id): str(o.name) for o in found if o.id not in recorded}
    assert not unknown, f"not in the state: {unknown}"


def test_destroy_removes_exactly_the_stack(
    engine_up: Up,
    docker_client: docker.DockerClient,
    base_images: dict[str, str],
    unique_name: str,
) -> None:
    prefix = f"{PROJECT}-{unique_name}"
    other_stack = {contract.LABEL_PROJECT: PROJECT, contract.LABEL_STACK: f"{unique_name}x"}
    other_project = {contract.LABEL_PROJECT: "other-project", contract.LABEL_STACK: unique_name}
    decoy_images = [f"{PROJECT}-{unique_name}x-api:{unique_name}x", f"{unique_name}-decoy:latest"]
    containers: list[Container] = []
    networks = []
    try:
        # Names that start like the stack's, labels of another stack, of another project with
        # the same stack name, and none: only labels of this project and stack may count.
        networks = [
            docker_client.networks.create(f"{prefix}-net-decoy", labels=other_stack | MINE),
            docker_client.networks.create(f"{unique_name}-net", labels=MINE),
        ]
        for name, labels in [
            (f"{prefix}-api-1-decoy", other_stack | {contract.LABEL_ROLE: contract.ROLE_API}),
            (f"{prefix}-proxy-decoy", {}),
            (f"{unique_name}-other-project", other_project),
        ]:
            containers.append(
                docker_client.containers.run(
                    base_images["api"],
                    ["sleep", "600"],
                    name=name,
                    labels=labels | MINE,
                    network=networks[0].name,
                    detach=True,
                )
            )
        for reference in decoy_images:
            tag_image(docker_client, base_images["api"], reference)

        stack = engine_up(unique_name)
        destroy(docker_client, stack.state_file)
        remove_labelled(docker_client, PROJECT, unique_name)

        assert stack_objects(docker_client, unique_name) == []
        for container in containers:
            container.reload()
            assert container.status == "running", f"decoy {container.name} was touched"
        for network in networks:
            docker_client.networks.get(network.id)
        for reference in decoy_images:
            docker_client.images.get(reference)
    finally:
        for container in containers:
            container.remove(force=True)
        for network in networks:
            network.remove()
        for reference in decoy_images:
            with contextlib.suppress(docker.errors.NotFound):
                docker_client.images.remove(reference)
