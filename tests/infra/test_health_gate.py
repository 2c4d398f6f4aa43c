"""ContainerHealthy's provider, as Pulumi runs it: pickled into the state, then loaded and run
in a process of its own that can't import the program's modules."""

import subprocess
import sys
from pathlib import Path

import docker
import pytest
from pulumi.dynamic.dynamic import serialize_provider

from health_gate import HealthWait
from tests.conftest import TEST_LABEL

pytestmark = pytest.mark.engine

# Loads the pickled provider from stdin and creates the resource, as pulumi.dynamic does.
RUN_PICKLED = """
import base64, json, sys, dill
provider = dill.loads(base64.b64decode(sys.stdin.read()))
provider.create(json.loads(sys.argv[1]))
print("healthy")
"""


def create_out_of_process(tmp_path: Path, props: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-I", "-c", RUN_PICKLED, props],  # -I: no program path, no cwd
        input=serialize_provider(HealthWait()),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("health_command", "expected"),
    [
        ("exit 0", "healthy"),
        ("echo the API does not answer; exit 1", "is unhealthy"),
    ],
    ids=["healthy", "unhealthy"],
)
def test_the_pickled_wait_reports_what_docker_says(
    docker_client: docker.DockerClient,
    base_images: dict[str, str],
    unique_name: str,
    tmp_path: Path,
    health_command: str,
    expected: str,
) -> None:
    container = docker_client.containers.run(
        base_images["api"],
        ["sh", "-c", "echo started; exec sleep 60"],
        name=unique_name,
        labels={TEST_LABEL: "1"},
        detach=True,
        healthcheck={
            "test": ["CMD-SHELL", health_command],
            "interval": 500_000_000,  # ns
            "retries": 1,
        },
    )
    try:
        props = f'{{"container_id": "{container.id}", "timeout": 30, "docker_host": null}}'
        result = create_out_of_process(tmp_path, props)
    finally:
        container.remove(force=True)

    output = result.stdout + result.stderr
    if expected == "healthy":
        assert result.returncode == 0 and result.stdout.strip() == "healthy", output
    else:
        assert expected in output, output
        assert result.returncode != 0, output
        # Which container, its last health check's exit code and output, its last logs.
        assert f"container {unique_name} (running" in output
        assert "last health check: exit 1: the API does not answer" in output
        assert "started" in output
