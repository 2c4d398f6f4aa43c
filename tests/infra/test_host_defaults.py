"""The stack on an engine whose daemon.json sets defaults of its own: a log driver with
options, and ulimits, as many hosts' do (rotation set by an administrator, a raised open-files
limit). dockerd merges them into each container's settings; pulumi-docker reads back what the
program declares, so the program declares none of them, and a second `up` plans nothing.

The engine is a second dockerd started by this module with such a daemon.json (its own data
root, socket and containerd namespace), next to the one the other tests use. Starting it
resets the iptables chains Docker keeps for published ports on all interfaces; the stacks of
these tests publish on 127.0.0.1, which Docker's userland proxy serves without them.
"""

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
import pytest

import contract
from tests.engine_stacks import PROJECT, Deployments, smoke
from tests.reliability.exposure import process_limit

pytestmark = pytest.mark.engine

# What an administrator might set: both keys are ones the program doesn't declare, so dockerd
# adds them to every container of the stack.
DAEMON_JSON = {
    "log-driver": "local",
    "log-opts": {"max-size": "5m", "max-file": "2"},
    "default-ulimits": {
        "nofile": {"Name": "nofile", "Soft": 4096, "Hard": 8192},
        "nproc": {"Name": "nproc", "Soft": 8192, "Hard": 8192},
    },
}
START_TIMEOUT = 60


@dataclass
class SecondEngine:
    client: docker.DockerClient
    host: str  # as DOCKER_HOST names it


def answers(path: Path) -> bool:
    """Does a server accept connections on this unix socket yet?"""
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


@pytest.fixture(scope="module")
def engine_with_defaults(
    docker_client: docker.DockerClient, base_images: dict[str, str]
) -> Iterator[SecondEngine]:
    """A second Docker engine configured by DAEMON_JSON, with the offline base images."""
    dockerd = shutil.which("dockerd")
    if dockerd is None or os.geteuid() != 0:
        reason = "starting a second dockerd needs root and dockerd"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    # Short: the engine's and containerd's sockets live under it (108 bytes at most).
    root = Path(tempfile.mkdtemp(prefix="dockerd-", dir="/tmp"))
    (root / "daemon.json").write_text(json.dumps(DAEMON_JSON))
    log = (root / "dockerd.log").open("w")
    engine = subprocess.Popen(
        [
            dockerd,
            f"--config-file={root / 'daemon.json'}",
            f"--data-root={root / 'data'}",
            f"--exec-root={root / 'exec'}",
            f"--pidfile={root / 'dockerd.pid'}",
            f"--host=unix://{root / 'docker.sock'}",
            "--containerd-namespace=host-defaults",
            "--containerd-plugins-namespace=host-defaults-plugins",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    client = None
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not answers(root / "docker.sock"):
            if engine.poll() is not None or time.monotonic() > deadline:
                said = (root / "dockerd.log").read_text()[-3000:]
                pytest.fail(f"the second dockerd did not start:\n{said}")
            time.sleep(0.5)
        host = f"unix://{root / 'docker.sock'}"
        client = docker.DockerClient(base_url=host, timeout=300)
        for name in base_images.values():
            client.images.load(docker_client.images.get(name).save(named=name))
        yield SecondEngine(client, host)
    finally:
        if client is not None:
            client.close()
        engine.terminate()
        engine.wait(timeout=60)
        log.close()
        shutil.rmtree(root, ignore_errors=True)


def test_host_defaults_are_merged_yet_the_stack_reads_back_as_declared(
    engine_with_defaults: SecondEngine,
    docker_client: docker.DockerClient,
    base_images: dict[str, str],
    unique_name: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The health gate (infra/health_gate.py) asks the engine DOCKER_HOST names, as
    # pulumi-docker does when no `docker:host` is configured.
    monkeypatch.setenv("DOCKER_HOST", engine_with_defaults.host)
    # Its subnet free on both engines: their bridges share this host's routes.
    deployments = Deployments(
        engine_with_defaults.client, base_images, tmp_path, subnets_of=docker_client
    )
    try:
        first = deployments.up(unique_name)
        assert smoke(first).returncode == 0

        # dockerd did merge its defaults into what runs...
        names = first.exports[contract.EXPORT_API_CONTAINERS]
        for name in [*names, first.exports[contract.EXPORT_PROXY_CONTAINER]]:
            container = engine_with_defaults.client.containers.get(name)
            host = container.attrs["HostConfig"]
            assert host["LogConfig"]["Config"]["max-size"] == "5m", name
            assert {u["Name"] for u in host["Ulimits"]} == {"nofile", "nproc"}, name
            # ...and the stack's own process limit is the one its processes have.
            limit = str(first.config[f"{PROJECT}:processLimit"])
            assert process_limit(container.attrs["State"]["Pid"]) == (limit, limit), name
        # ...and yet nothing reads back other than declared, and a second up plans nothing.
        assert first.drift == {}, first.drift
        again = deployments.up(unique_name)
        assert sorted(again.summary.unchanged) == sorted(first.summary.created), again.summary
    finally:
        deployments.close()
