"""Three Docker engines in containers, joined into one swarm, and a registry, on a test network
of their own: where the stack deploys as it would to a real cluster, through `docker:host`.

- The nodes: the offline base image with Debian's docker.io (cluster/node.Dockerfile). Not
  `--privileged`: a container here can't be given every capability (the host's bounding set
  lacks CAP_SYS_RESOURCE), so each gets all the others, no seccomp or AppArmor profile, the
  kernel's /proc and /sys writable, and the host's cgroups.
- The manager serves Docker's API over TLS (a CA, server and client certificates made here),
  published on a loopback port: `docker:host` is tcp://127.0.0.1:<port> with docker:caMaterial,
  docker:certMaterial and docker:keyMaterial, as a user's remote manager would be. It also
  publishes the stack's proxyPort on loopback (the proxy runs on the manager).
- The registry: Debian's docker-registry (cluster/registry.Dockerfile), `registry:5000` on the
  test network, plain HTTP (every node lists it as an insecure registry).
Nothing is reachable from outside this machine: the test network is a bridge, and the manager's
ports are published on 127.0.0.1 only.
"""

import contextlib
import io
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors

from engine_harness.engine_client import engine_client
from engine_harness.free_resources import free_port, free_subnet
from tests.certificates import Authority
from tests.conftest import TEST_LABEL

HERE = Path(__file__).resolve().parent / "cluster"
NODES = 3
REGISTRY = "registry:5000"
DOCKER_TLS_PORT = 2376
# What a node container may do instead of --privileged (see the module's docstring); the CLI's
# `--security-opt systempaths=unconfined` is the empty MaskedPaths and ReadonlyPaths below.
NODE_OPTIONS: dict[str, Any] = {
    "cap_add": ["ALL"],
    "cap_drop": ["SYS_RESOURCE"],
    "security_opt": ["seccomp=unconfined", "apparmor=unconfined"],
    "cgroupns": "host",
    "binds": {"/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "rw"}},
    "tmpfs": {"/run": ""},
}
READY_SECONDS = 60


@dataclass
class Cluster:
    name: str
    manager: docker.DockerClient
    # The stack's `docker:` provider config (keys in full) and which of them are secrets.
    provider: dict[str, str]
    secret_keys: frozenset[str]
    # The port the proxy publishes on the manager, reachable on this host's loopback.
    proxy_port: int
    nodes: list[docker.models.containers.Container] = field(default_factory=list)

    def engine(self, index: int) -> "NodeEngine":
        return NodeEngine(self.nodes[index])


@dataclass
class NodeEngine:
    """A node's engine, asked through `docker exec` in its container (its API isn't published)."""

    container: docker.models.containers.Container

    def ready(self) -> "NodeEngine":
        """This node, once its engine answers."""
        deadline = time.monotonic() + READY_SECONDS
        while self.container.exec_run(["docker", "info"]).exit_code != 0:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.container.name}: no Docker engine answers")
            time.sleep(1)
        return self

    def docker(self, *args: str) -> str:
        done = self.container.exec_run(["docker", *args])
        if done.exit_code != 0:
            raise RuntimeError(f"{self.container.name}: docker {' '.join(args)}: {done.output!r}")
        return str(done.output.decode())


def _build(client: docker.DockerClient, dockerfile: str, tag: str, base: str) -> str:
    client.images.build(
        path=str(HERE), dockerfile=dockerfile, tag=tag, buildargs={"BASE_IMAGE": base}, rm=True
    )
    return tag


def _put(container: docker.models.containers.Container, files: dict[str, str]) -> None:
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o600
            tar.addfile(info, io.BytesIO(data))
    container.put_archive("/", archive.getvalue())


def _node(
    client: docker.DockerClient,
    image: str,
    name: str,
    network: str,
    certs: dict[str, str] | None,
    ports: dict[int, int],
) -> docker.models.containers.Container:
    """A node, started; with `certs`, serving Docker's API over TLS (the manager)."""
    command = ["--host=unix:///var/run/docker.sock", f"--insecure-registry={REGISTRY}"]
    if certs:
        command += [
            f"--host=tcp://0.0.0.0:{DOCKER_TLS_PORT}",
            "--tlsverify",
            "--tlscacert=/certs/ca.pem",
            "--tlscert=/certs/server.pem",
            "--tlskey=/certs/server-key.pem",
        ]
    # The Docker SDK's high-level create has no MaskedPaths or ReadonlyPaths: its API client.
    host_config = client.api.create_host_config(
        port_bindings={inside: ("127.0.0.1", outside) for inside, outside in ports.items()},
        network_mode=network,
        **NODE_OPTIONS,
    )
    host_config |= {"MaskedPaths": [], "ReadonlyPaths": []}
    created = client.api.create_container(
        image,
        command,
        name=name,
        hostname=name.rsplit("-", 1)[-1],
        labels={TEST_LABEL: "1"},
        ports=list(ports),
        host_config=host_config,
    )
    node = client.containers.get(created["Id"])
    if certs:
        _put(node, {f"certs/{file}": pem for file, pem in certs.items()})
    node.start()
    return node


def _answering(manager: docker.DockerClient) -> docker.DockerClient:
    """The manager's client, once its engine answers."""
    deadline = time.monotonic() + READY_SECONDS
    while True:
        try:
            manager.ping()
            return manager
        except (docker.errors.DockerException, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


@contextlib.contextmanager
def three_node_swarm(
    client: docker.DockerClient, base_images: dict[str, str], name: str
) -> Iterator[Cluster]:
    """The cluster, removed with everything in it afterwards (also after a failure)."""
    base = base_images["api"]
    node_image = _build(client, "node.Dockerfile", "pulumi-flask-rebar-test/swarm-node", base)
    registry_image = _build(client, "registry.Dockerfile", "pulumi-flask-rebar-test/registry", base)
    authority = Authority.make("swarm test CA")
    server_cert, server_key = authority.issue(["127.0.0.1", "localhost"])
    client_cert, client_key = authority.issue(["test client"], client=True)
    labels = {TEST_LABEL: "1"}
    network = client.networks.create(
        f"{name}-net",
        driver="bridge",
        ipam=docker.types.IPAMConfig(
            pool_configs=[docker.types.IPAMPool(subnet=free_subnet(client))]
        ),
        labels=labels,
    )
    created: list[docker.models.containers.Container] = []
    api_port, proxy_port = free_port(), free_port()
    try:
        registry = client.containers.create(
            registry_image, name=f"{name}-registry", labels=labels, network=network.name
        )
        created.append(registry)
        network.disconnect(registry)
        network.connect(registry, aliases=["registry"])
        registry.start()
        for index in range(NODES):
            is_manager = index == 0
            certs = {
                "ca.pem": authority.pem,
                "server.pem": server_cert,
                "server-key.pem": server_key,
            }
            ports = {DOCKER_TLS_PORT: api_port, proxy_port: proxy_port} if is_manager else {}
            created.append(
                _node(
                    client,
                    node_image,
                    f"{name}-node{index + 1}",
                    network.name,
                    certs if is_manager else None,
                    ports,
                )
            )
        nodes = created[1:]
        provider = {
            "docker:host": f"tcp://127.0.0.1:{api_port}",
            "docker:caMaterial": authority.pem,
            "docker:certMaterial": client_cert,
            "docker:keyMaterial": client_key,
        }
        manager = _answering(engine_client(provider, timeout=300))
        for node in nodes:
            node.reload()
        address = nodes[0].attrs["NetworkSettings"]["Networks"][network.name]["IPAddress"]
        manager.swarm.init(advertise_addr=address)
        token = manager.swarm.attrs["JoinTokens"]["Worker"]
        for node in nodes[1:]:
            NodeEngine(node).ready().docker("swarm", "join", "--token", token, f"{address}:2377")
        for base in {base_images["api"], base_images["proxy"]}:
            manager.images.load(b"".join(client.images.get(base).save(named=base)))
        yield Cluster(
            name,
            manager,
            provider,
            frozenset({"docker:keyMaterial"}),
            proxy_port,
            nodes,
        )
    finally:
        for container in reversed(created):
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True, v=True)
        network.remove()
