"""Load: a sustained run with a real load generator, and many idle keep-alive connections."""

import contextlib
import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
import requests
from docker.models.containers import Container

import contract
from tests.engine_stacks import EngineStack, connect, port_of
from tests.reliability.helpers import (
    REQUEST_TIMEOUT,
    lifetimes,
    read_response,
    stack_containers,
)

pytestmark = pytest.mark.engine

SECONDS = 60
CONNECTIONS = 64
IDLE_CONNECTIONS = 1000
# wrk's report, one JSON line, from its done() hook.
REPORT_LUA = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"p99_ms":%.1f}\\n',
    summary.requests, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(99) / 1000))
end
"""


class MemoryPeaks:
    """Each container's memory peak and limit (bytes), sampled until stopped. Where the engine
    reports the cgroup's own peak (`max_usage`, cgroup v1) that is used: nothing between
    samples is missed."""

    def __init__(self, containers: list[Container]) -> None:
        self.containers = containers
        self.peaks: dict[str, int] = {}
        self.limits: dict[str, int] = {}
        self.failcnt: dict[str, int] = {}
        self._stop = threading.Event()

    def sample(self) -> None:
        for container in self.containers:
            memory = container.stats(stream=False, one_shot=True)["memory_stats"]
            name = str(container.name)
            peak = int(memory.get("max_usage", memory["usage"]))
            self.peaks[name] = max(self.peaks.get(name, 0), peak)
            self.limits[name] = int(memory["limit"])
            self.failcnt[name] = int(memory.get("failcnt", 0))

    def _run(self) -> None:
        while not self._stop.wait(2.0):
            self.sample()

    @contextlib.contextmanager
    def running(self) -> Iterator["MemoryPeaks"]:
        thread = threading.Thread(target=self._run, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join(timeout=30)
            self.sample()


def test_sustained_load_has_no_errors_restarts_or_memory_overruns(
    stack: EngineStack, docker_client: docker.DockerClient, wrk: str, tmp_path: Path
) -> None:
    containers = stack_containers(docker_client, stack)
    before = lifetimes(containers)
    script = tmp_path / "report.lua"
    script.write_text(REPORT_LUA)
    command = [wrk, "-t2", f"-c{CONNECTIONS}", f"-d{SECONDS}s", "--timeout", "30s"]
    with MemoryPeaks(containers).running() as memory:
        run = subprocess.run(
            [*command, "-s", str(script), f"{stack.url}/"],
            capture_output=True,
            text=True,
            timeout=SECONDS + 60,
            check=False,
        )
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads(run.stdout.strip().splitlines()[-1])
    print(f"wrk {' '.join(command[1:])}: {report}")  # shown with -rP
    errors = {key: report[key] for key in ("connect", "read", "write", "status", "timeout")}
    assert report["requests"] > 1000 and not any(errors.values()), f"{report}\n{run.stdout}"

    assert lifetimes(containers) == before, "a container restarted under load"
    limits_mb = {contract.ROLE_API: stack.settings.api_memory_mb}
    limits_mb[contract.ROLE_PROXY] = stack.settings.proxy_memory_mb
    for container in containers:
        name = str(container.name)
        assert not container.attrs["State"]["OOMKilled"], f"{name} was OOM-killed"
        configured = limits_mb[container.labels[contract.LABEL_ROLE]] * 2**20
        assert memory.limits[name] == configured, f"{name}: limit {memory.limits[name]}"
        assert memory.peaks[name] < memory.limits[name], f"{name} reached its memory limit"
        assert memory.failcnt[name] == 0, f"{name} hit its memory limit {memory.failcnt[name]}x"


def test_idle_keepalive_connections_do_not_stop_others_being_served(
    stack: EngineStack,
) -> None:
    idle: list[socket.socket] = []
    try:
        for _ in range(IDLE_CONNECTIONS):
            sock = connect(port_of(stack))
            idle.append(sock)
            sock.sendall(b"GET / HTTP/1.1\r\nHost: idle\r\n\r\n")
        for sock in idle:
            response, _ = read_response(sock)
            assert response.status == 200, response
        # All of them held open and idle: another client is served, and promptly.
        with requests.Session() as other:
            for path in ["/", "/healthz", "/swagger"] * 5:
                started = time.monotonic()
                answer = other.get(f"{stack.url}{path}", timeout=REQUEST_TIMEOUT)
                took = time.monotonic() - started
                assert answer.status_code == 200, f"{path}: HTTP {answer.status_code}"
                assert took < 3.0, f"{path} took {took:.1f}s beside {len(idle)} idle connections"
        # The idle connections were kept: each still answers.
        for sock in idle:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: idle\r\n\r\n")
        for sock in idle:
            response, _ = read_response(sock)
            assert response.status == 200, response
    finally:
        for sock in idle:
            sock.close()
