"""Helpers of the image tests: build an image, run the two containers the way the Pulumi stack
does, and wait for a condition with a deadline."""

import contextlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import docker
import docker.errors
import pytest
import requests
from docker.models.containers import Container
from docker.models.networks import Network

import contract
from engine_harness.free_resources import free_subnet
from tests.conftest import TEST_LABEL

T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parents[2]
# Every HTTP request of these tests gives up after this long.
REQUEST_TIMEOUT = 5.0
# Time for a fresh stack to serve GET / through the proxy.
STACK_START_TIMEOUT = 30.0
# The one writable directory of both containers (a tmpfs), a path inside them, not on the host.
CONTAINER_TMP = "/tmp"
# How the stack runs both containers: nothing of the image may change, no privilege is kept.
HARDENING: dict[str, Any] = {
    "read_only": True,
    "tmpfs": {CONTAINER_TMP: ""},
    "cap_drop": ["ALL"],
    "security_opt": ["no-new-privileges=true"],
}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def describe(value: object) -> str:
    if isinstance(value, requests.Response):
        return f"HTTP {value.status_code} {value.text[:300]!r}"
    text = repr(value)
    # The end of a long log is what shows why it is not ready yet.
    return text if len(text) <= 600 else f"...{text[-600:]}"


def wait_for(
    probe: Callable[[], T],
    ready: Callable[[T], bool],
    *,
    timeout: float,
    what: str,
    interval: float = 0.25,
) -> T:
    """Call probe until ready(its result) or the deadline; fail with what it last saw."""
    deadline = time.monotonic() + timeout
    last: object = "no attempt yet"
    while True:
        try:
            value = probe()
        except (requests.RequestException, docker.errors.APIError) as error:
            last = error
        else:
            if ready(value):
                return value
            last = value
        if time.monotonic() >= deadline:
            pytest.fail(f"{what}: not within {timeout} s; last saw {describe(last)}")
        time.sleep(interval)


def get(url: str, **kwargs: Any) -> requests.Response:
    return requests.get(url, timeout=REQUEST_TIMEOUT, **kwargs)


@dataclass
class BuildResult:
    tag: str
    # Each Dockerfile step as the build log names it, and whether the cache answered it.
    steps: dict[str, bool]


def build_image(
    client: docker.DockerClient, context: Path, base_image: str, **arguments: str
) -> BuildResult:
    """Build context (legacy builder) as a uniquely tagged, test-labelled image; `arguments`:
    more build arguments (e.g. PYTHON)."""
    tag = f"{unique('t-' + context.name)}:test"
    _, log = client.images.build(
        path=str(context),
        buildargs={"BASE_IMAGE": base_image, **arguments},
        rm=True,
        forcerm=True,
        labels={TEST_LABEL: "1"},
        tag=tag,
    )
    steps: dict[str, bool] = {}
    step = ""
    for line in "".join(entry.get("stream", "") for entry in log).splitlines():
        if line.startswith("Step "):
            step = line.partition(" : ")[2]
            steps[step] = False
        elif "Using cache" in line:
            steps[step] = True
    return BuildResult(tag, steps)


def remove_image(client: docker.DockerClient, tag: str, *, prune: bool = True) -> None:
    with contextlib.suppress(docker.errors.ImageNotFound):
        client.images.remove(tag, force=True, noprune=not prune)


@dataclass
class Stack:
    """The Docker objects of one test: a network, API containers and the proxy in front."""

    client: docker.DockerClient
    name: str
    api_image: str
    proxy_image: str
    network: Network | None = None
    containers: list[Container] = field(default_factory=list)

    def create_network(self) -> Network:
        """A network with a subnet of its own (as the stack's)."""
        pool = docker.types.IPAMPool(subnet=free_subnet(self.client))
        self.network = self.client.networks.create(
            self.name,
            driver="bridge",
            ipam=docker.types.IPAMConfig(pool_configs=[pool]),
            labels={TEST_LABEL: "1"},
        )
        self.network.reload()
        return self.network

    def run(self, image: str, name: str, **kwargs: Any) -> Container:
        """Create and start a test-labelled container (create never pulls, unlike run)."""
        container = self.client.containers.create(
            image, name=f"{self.name}-{name}", labels={TEST_LABEL: "1"}, detach=True, **kwargs
        )
        self.containers.append(container)
        container.start()
        container.reload()
        return container

    def start_api(
        self,
        name: str = "api",
        image: str | None = None,
        environment: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> Container:
        """An API container answering to the alias, as the stack runs it (Docker picks its
        address); `kwargs` go to Docker's create (e.g. a command of its own)."""
        assert self.network is not None
        endpoint = self.client.api.create_endpoint_config(aliases=[contract.API_ALIAS])
        return self.run(
            image or self.api_image,
            name,
            environment={"PORT": str(contract.API_PORT), **(environment or {})},
            user=contract.API_USER,
            network=self.network.name,
            networking_config={self.network.name: endpoint},
            **HARDENING,
            **kwargs,
        )

    def start_proxy(
        self, environment: dict[str, str] | None = None, image: str | None = None, **kwargs: Any
    ) -> Container:
        """The proxy, as the stack runs it; `kwargs` go to Docker's create (e.g. volumes)."""
        if environment is None:
            environment = {"API_UPSTREAM": f"{contract.API_ALIAS}:{contract.API_PORT}"}
        network = {"network": self.network.name} if self.network is not None else {}
        return self.run(
            image or self.proxy_image,
            "proxy",
            environment=environment,
            user=contract.PROXY_USER,
            ports={
                f"{port}/tcp": ("127.0.0.1", None)
                for port in (contract.PROXY_HTTP_PORT, contract.PROXY_HTTPS_PORT)
            },
            **network,
            **HARDENING,
            **kwargs,
        )

    def remove(self, container: Container) -> None:
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True, v=True)
        self.containers.remove(container)

    def remove_all(self) -> None:
        """Remove every container, then the network; keep going past errors, report the first."""
        errors: list[docker.errors.APIError] = []
        for container in list(self.containers):
            try:
                self.remove(container)
            except docker.errors.APIError as error:
                errors.append(error)
        if self.network is not None:
            try:
                self.network.remove()
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as error:
                errors.append(error)
        if errors:
            raise errors[0]


@dataclass(frozen=True)
class Images:
    api: str
    proxy: str


@dataclass(frozen=True)
class Running:
    stack: Stack
    api: Container
    proxy: Container

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{host_port(self.proxy, contract.PROXY_HTTP_PORT)}"

    def serving(self, what: str) -> "Running":
        """Itself, once GET / through the proxy answers 200 (`what`: the stack, for a failure)."""
        wait_for(
            lambda: get(f"{self.url}/"),
            lambda response: response.status_code == 200,
            timeout=STACK_START_TIMEOUT,
            what=f"GET / through the proxy of {what}",
        )
        return self


def host_port(container: Container, container_port: int) -> int:
    """The host port Docker published container_port on (read after container.reload())."""
    [binding] = container.attrs["NetworkSettings"]["Ports"][f"{container_port}/tcp"]
    return int(binding["HostPort"])
