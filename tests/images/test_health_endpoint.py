"""The API image's own health endpoint, with an adopter's app in place of the post's: the image's
health check and the deploy's health gate pass though the app has no GET /, and the proxy
answers the health path itself, so outside clients never reach the API's."""

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

import contract
from health_gate import HealthWait
from tests.images.stack import Running, Stack, build_image, get, remove_image, wait_for
from tests.service.replaced_app import ITEMS, service_with_replaced_app

pytestmark = pytest.mark.engine

HEALTHY_TIMEOUT = 60.0


@pytest.fixture
def replaced_app_image(
    docker_client: docker.DockerClient, base_images: dict[str, str], tmp_path: Path
) -> Iterator[str]:
    """The API image built from service/ with its app replaced (only the app's files differ:
    the dependency layers come from the build cache)."""
    tag = build_image(docker_client, service_with_replaced_app(tmp_path), base_images["api"]).tag
    try:
        yield tag
    finally:
        remove_image(docker_client, tag, prune=False)


def test_a_replaced_app_passes_the_health_gate_and_its_health_stays_inside(
    stack: Stack, replaced_app_image: str
) -> None:
    stack.create_network()
    api = stack.start_api(image=replaced_app_image, environment={"GUNICORN_ACCESS_LOG": "on"})
    # The gate a deploy waits on (ContainerHealthy), reading Docker's verdict of the image's
    # HEALTHCHECK; it raises, with the health check's output, when Docker calls it unhealthy.
    HealthWait.wait({"docker_host": os.environ.get("DOCKER_HOST")}, api.id, HEALTHY_TIMEOUT)

    running = Running(stack, api, stack.start_proxy())
    wait_for(
        lambda: get(f"{running.url}/items"),
        lambda response: response.status_code == 200,
        timeout=HEALTHY_TIMEOUT,
        what="GET /items through the proxy",
    )
    assert get(f"{running.url}/items").json() == ITEMS
    # From outside, the health path is the proxy's own: nginx answers it and never passes it
    # on. A request sent after it that does reach the API shows the log is written up to then.
    outside, after = (f"outside-{uuid.uuid4().hex}" for _ in range(2))
    assert get(f"{running.url}{contract.API_HEALTH_PATH}", headers={"X-Request-ID": outside}).ok
    assert get(f"{running.url}/items", headers={"X-Request-ID": after}).ok
    log = wait_for(
        lambda: api.logs().decode(),
        lambda text: f"rid={after} " in text,
        timeout=10,
        what="the API's access log line of GET /items",
    )
    assert f"rid={outside} " not in log
